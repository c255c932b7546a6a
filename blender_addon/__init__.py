"""MotionMill's Blender add-on. bpy is imported only inside register()/unregister() and the UI submodules, so
`from blender_addon.client import BackendClient` works in any Python (pipeline scripts, tests)."""
bl_info = {
    "name": "MotionMill",
    "author": "MotionMill",
    "version": (0, 1, 0),
    "blender": (4, 2, 0),
    "location": "View3D > Sidebar > MotionMill",
    "description": "Text to character animation with MotionMillion",
    "category": "Animation",
}


def _classes():
    from . import long, ops, ops_backend, ops_clips, ops_motion, props, ui, ui_bonemap
    return (props.CLASSES + ops.CLASSES + ops_motion.CLASSES + ops_backend.CLASSES + ops_clips.CLASSES + long.CLASSES
            + ui.CLASSES + ui_bonemap.CLASSES)


def register():
    import bpy
    from . import failures, props
    for cls in _classes():   # an operator's unexpected error: one line in the panel, the traceback in the log
        bpy.utils.register_class(failures.guard(cls))
    props.register()


def unregister():
    import bpy
    from . import props, session
    session.SESSION.close()          # stops the backend process; the add-on registers no app timers
    props.unregister()
    for cls in reversed(_classes()):
        bpy.utils.unregister_class(cls)
