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


def register():
    import bpy  # noqa: F401  (the UI modules register their classes here as they are added)


def unregister():
    import bpy  # noqa: F401
