"""A quick Workbench playblast of an armature's animation: `render_preview(scene, rig, "out.gif"|"out.mp4", f0, f1)`.

The scene is left as it was: every temporary datablock (stand-in figure, ground, camera, material, world) is removed
and the render settings, camera, frame and selection are restored. Armatures do not render, so a rig without a
skinned mesh gets a temporary stand-in: one mesh of octahedral bone shapes, skinned to the deform bones.
.mp4 goes through Blender's FFMPEG output (H.264 in MPEG-4); .gif is rendered to PNG frames and encoded here
(global popularity palette, LZW, only the changed rectangle of each frame, looping forever).
"""
import math
import os
import shutil
import struct
import tempfile

import numpy as np

GIF_MAX_FRAMES = 90
FIGURE_RGB = (0.85, 0.45, 0.15)
GROUND_RGB = ((0.55, 0.55, 0.58), (0.42, 0.42, 0.45))
BACKGROUND_RGB = (0.16, 0.17, 0.19)


class PreviewError(Exception):
    pass


def check_path(path):
    """Raise PreviewError (one line) when `path` is not a writable .gif/.mp4 this bpy can produce."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".gif", ".mp4"):
        raise PreviewError(f"--preview {path}: unknown extension {ext or '(none)'!r}; use .gif or .mp4")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise PreviewError(f"--preview {path}: folder {folder} does not exist")
    if ext == ".mp4":
        import bpy
        if not getattr(bpy.app.build_options, "codec_ffmpeg", False):
            raise PreviewError(f"--preview {path}: this Blender build has no FFMPEG video output; use a .gif")
    return ext


# ------------------------------------------------------------------------------------------ save / restore

_RENDER = ("engine", "resolution_x", "resolution_y", "resolution_percentage", "filepath", "film_transparent",
           "use_file_extension", "fps", "fps_base", "use_stamp", "dither_intensity")
_IMAGE = ("media_type", "file_format", "color_mode", "color_depth", "compression")
_FFMPEG = ("format", "codec", "constant_rate_factor", "ffmpeg_preset", "gopsize", "audio_codec")
_SHADING = ("light", "color_type", "show_shadows", "shadow_intensity", "show_cavity", "studio_light",
            "show_object_outline", "show_specular_highlight")
_DISPLAY = ("light_direction", "shadow_shift", "shadow_focus")
_VIEW = ("view_transform", "look", "exposure", "gamma")
_SCENE = ("camera", "frame_start", "frame_end", "frame_step", "frame_current", "world")


def _snap(struct_, names):
    out = {}
    for n in names:
        if hasattr(struct_, n):
            v = getattr(struct_, n)
            out[n] = tuple(v) if hasattr(v, "__len__") and not isinstance(v, str) else v
    return out


def _restore(struct_, saved):
    for n, v in saved.items():
        try:
            setattr(struct_, n, v)
        except (AttributeError, TypeError, ValueError):
            pass        # an enum whose valid items depend on another field restored later: best effort


def _snapshot(scene):
    r = scene.render
    return [(scene, _snap(scene, _SCENE)), (r, _snap(r, _RENDER)), (r.image_settings, _snap(r.image_settings, _IMAGE)),
            (r.ffmpeg, _snap(r.ffmpeg, _FFMPEG)), (scene.display, _snap(scene.display, _DISPLAY)),
            (scene.display.shading, _snap(scene.display.shading, _SHADING)),
            (scene.view_settings, _snap(scene.view_settings, _VIEW))]


def _restore_all(saved):
    for _ in range(2):      # twice: media_type before file_format, file_format before color_mode, etc.
        for s, v in saved:
            _restore(s, v)


# ------------------------------------------------------------------------------------------ geometry

def _has_skinned_mesh(obj):
    import bpy
    for o in bpy.data.objects:
        if o.type != "MESH":
            continue
        if any(m.type == "ARMATURE" and m.object == obj for m in o.modifiers) or \
                (o.parent == obj and o.parent_type == "BONE"):
            return True
    return False


def _bone_points(obj, frames, scene):
    """World positions (F, B, 2, 3) of pose bone heads/tails at `frames`, and the left-right axis (3,) or None."""
    from . import rig
    try:
        roles = rig.mapping_for(obj).roles
        hips = (roles.get("left_hip"), roles.get("right_hip"))
        hips = hips if all(hips) else None
    except Exception:       # noqa: BLE001 - an unmappable rig just gets the default view
        hips = None
    pts, lefts = [], []
    for f in frames:
        scene.frame_set(f)
        mw = np.array(obj.matrix_world)
        ht = np.array([[tuple(pb.head), tuple(pb.tail)] for pb in obj.pose.bones], float)
        pts.append(ht @ mw[:3, :3].T + mw[:3, 3])
        if hips:
            a, b = (np.array(mw[:3, :3]) @ np.array(obj.pose.bones[h].head) + mw[:3, 3] for h in hips)
            lefts.append(a - b)
    left = None
    if lefts:
        v = np.mean(lefts, axis=0)
        v[2] = 0.0
        left = v / np.linalg.norm(v) if np.linalg.norm(v) > 1e-6 else None
    return np.array(pts), left


def _stand_in(obj):
    """One mesh of octahedra (one per deform bone, rest pose, armature space) skinned to `obj`."""
    import bpy
    bones = [b for b in obj.data.bones if b.use_deform] or list(obj.data.bones)
    heads = np.array([tuple(b.head_local) for b in bones] + [tuple(b.tail_local) for b in bones])
    diag = float(np.linalg.norm(heads.max(0) - heads.min(0))) or 1.0
    bones = [b for b in bones if b.children or b.length > 0.05 * diag] or bones     # drop tiny end bones
    verts, faces, groups = [], [], []
    for b in bones:
        L = b.length
        m = np.array(b.matrix_local)
        r = max(0.16 * L, 0.018 * diag)
        local = [(0, 0, 0), (r, 0.2 * L, 0), (0, 0.2 * L, r), (-r, 0.2 * L, 0), (0, 0.2 * L, -r), (0, L, 0)]
        base = len(verts)
        verts += [tuple(m[:3, :3] @ np.array(p, float) + m[:3, 3]) for p in local]
        for k in range(4):
            a, c = base + 1 + k, base + 1 + (k + 1) % 4
            faces += [(base, c, a), (a, c, base + 5)]
        groups.append((b.name, range(base, base + 6)))
    me = bpy.data.meshes.new("MM_preview_figure")
    me.from_pydata(verts, [], faces)
    me.update()
    ob = bpy.data.objects.new("MM_preview_figure", me)
    for name, idx in groups:
        vg = ob.vertex_groups.new(name=name)
        vg.add(list(idx), 1.0, "REPLACE")
    ob.parent = obj
    ob.matrix_parent_inverse.identity()
    ob.matrix_basis.identity()
    mod = ob.modifiers.new("Armature", "ARMATURE")
    mod.object = obj
    return ob


def _ground(xy_min, xy_max, z, tile):
    """A checkered plane (two materials) covering [xy_min, xy_max] at height z."""
    import bpy
    nx, ny = (max(1, int(math.ceil((xy_max[i] - xy_min[i]) / tile))) for i in (0, 1))
    x0, y0 = (math.floor(xy_min[i] / tile) * tile for i in (0, 1))
    verts = [(x0 + i * tile, y0 + j * tile, z) for j in range(ny + 1) for i in range(nx + 1)]
    faces = [(j * (nx + 1) + i, j * (nx + 1) + i + 1, (j + 1) * (nx + 1) + i + 1, (j + 1) * (nx + 1) + i)
             for j in range(ny) for i in range(nx)]
    me = bpy.data.meshes.new("MM_preview_ground")
    me.from_pydata(verts, [], faces)
    me.update()
    mats = []
    for k, rgb in enumerate(GROUND_RGB):
        mat = bpy.data.materials.new(f"MM_preview_ground{k}")
        mat.diffuse_color = (*rgb, 1.0)
        me.materials.append(mat)
        mats.append(mat)
    me.polygons.foreach_set("material_index", [(i + j) % 2 for j in range(ny) for i in range(nx)])
    return bpy.data.objects.new("MM_preview_ground", me), mats


def _frame_camera(cam_obj, pts, left, aspect, up=np.array([0.0, 0.0, 1.0])):
    """Aim a perspective camera at a 3/4 front view of the points (N,3) so that all of them are in frame."""
    from mathutils import Matrix
    fwd = np.cross(left, up) if left is not None else np.array([0.0, -1.0, 0.0])
    side = left if left is not None else np.array([1.0, 0.0, 0.0])
    az, el = math.radians(35.0), math.radians(14.0)
    d = (fwd * math.cos(az) - side * math.sin(az)) * math.cos(el) + up * math.sin(el)   # centre -> camera
    d /= np.linalg.norm(d)
    right = np.cross(-d, up)
    right /= np.linalg.norm(right)
    cup = np.cross(right, -d)
    c = (pts.min(0) + pts.max(0)) / 2
    rel = pts - c
    x, y, z = rel @ right, rel @ cup, rel @ d
    c = c + right * (x.max() + x.min()) / 2 + cup * (y.max() + y.min()) / 2     # centre the projected extents
    rel = pts - c
    x, y, z = rel @ right, rel @ cup, rel @ d
    cam = cam_obj.data
    cam.sensor_fit = "HORIZONTAL"
    cam.lens = 35.0
    tx = math.tan(cam.angle_x / 2)
    ty = tx / aspect
    dist = float(np.max(np.maximum(np.abs(x) / tx, np.abs(y) / ty) + z)) * 1.1
    dist = max(dist, 0.5)
    pos = c + d * dist
    rot = np.stack([right, cup, d], axis=1)            # camera looks down its -Z
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = rot, pos
    cam_obj.matrix_world = Matrix(m.tolist())
    cam.clip_start, cam.clip_end = max(0.01, dist * 0.01), dist * 10 + 100


# ------------------------------------------------------------------------------------------ GIF

def _palette(frames):
    """Global palette (<=256 RGB) by popularity of 5-bit colours, and a (32768,) lookup 15-bit colour -> index."""
    q = [(f >> 3).astype(np.int32) for f in frames]
    keys = np.concatenate([(a[..., 0] << 10 | a[..., 1] << 5 | a[..., 2]).ravel() for a in q])
    counts = np.bincount(keys, minlength=32768)
    used = np.nonzero(counts)[0]
    top = used[np.argsort(-counts[used], kind="stable")][:256]
    pal = np.stack([(top >> 10) & 31, (top >> 5) & 31, top & 31], 1) * 8 + 4
    lut = np.zeros(32768, np.uint8)
    cols = np.stack([(used >> 10) & 31, (used >> 5) & 31, used & 31], 1) * 8 + 4
    for s in range(0, len(used), 4096):
        dd = ((cols[s:s + 4096, None, :] - pal[None]) ** 2).sum(-1)
        lut[used[s:s + 4096]] = dd.argmin(1)
    return pal.astype(np.uint8), lut


def _lzw(indices, min_size=8):
    """GIF LZW of a flat sequence of palette indices; returns the sub-blocked image data (after the min code size)."""
    clear, eoi = 1 << min_size, (1 << min_size) + 1
    out = bytearray()
    acc = nbits = 0
    size = min_size + 1
    table = {}
    nxt = eoi + 1

    def emit(code):
        nonlocal acc, nbits
        acc |= code << nbits
        nbits += size
        while nbits >= 8:
            out.append(acc & 255)
            acc >>= 8
            nbits -= 8

    emit(clear)
    data = bytes(indices)
    if not data:
        emit(eoi)
    else:
        prefix = data[0]
        for px in data[1:]:
            key = (prefix << 8) | px
            code = table.get(key)
            if code is not None:
                prefix = code
                continue
            emit(prefix)
            table[key] = nxt
            if nxt == (1 << size) and size < 12:
                size += 1
            nxt += 1
            if nxt == 4096:
                emit(clear)
                table.clear()
                nxt, size = eoi + 1, min_size + 1
            prefix = px
        emit(prefix)
        emit(eoi)
    if nbits:
        out.append(acc & 255)
    blocks = bytearray()
    for s in range(0, len(out), 255):
        chunk = out[s:s + 255]
        blocks += bytes([len(chunk)]) + chunk
    return bytes(blocks) + b"\x00"


def write_gif(path, frames, delay_cs):
    """frames: list of (H, W, 3) uint8, same size. An animated GIF89a, global palette, looping forever."""
    h, w = frames[0].shape[:2]
    pal, lut = _palette(frames)
    idx = [lut[(f[..., 0] >> 3).astype(np.int32) << 10 | (f[..., 1] >> 3).astype(np.int32) << 5
               | (f[..., 2] >> 3).astype(np.int32)] for f in frames]
    table = np.zeros((256, 3), np.uint8)
    table[:len(pal)] = pal
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", w, h, 0xF7, 0, 0) + table.tobytes())
    out += b"\x21\xFF\x0BNETSCAPE2.0\x03\x01\x00\x00\x00"                      # loop forever
    prev = None
    for im in idx:
        if prev is None:
            x0, y0, x1, y1 = 0, 0, w, h
        else:
            ys, xs = np.nonzero(im != prev)
            if len(ys):
                x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            else:
                x0, y0, x1, y1 = 0, 0, 1, 1
        out += b"\x21\xF9\x04" + struct.pack("<BHBB", 0x04, int(delay_cs), 0, 0)   # disposal 1: keep
        out += b"\x2C" + struct.pack("<HHHHB", int(x0), int(y0), int(x1 - x0), int(y1 - y0), 0) + b"\x08"
        out += _lzw(np.ascontiguousarray(im[y0:y1, x0:x1]).ravel().tobytes())
        prev = im
    out += b"\x3B"
    with open(path, "wb") as f:
        f.write(out)


def _load_png(path):
    import bpy
    img = bpy.data.images.load(path)
    try:
        w, h = img.size
        px = np.empty(w * h * 4, np.float32)
        img.pixels.foreach_get(px)
    finally:
        bpy.data.images.remove(img)
    return (np.clip(px.reshape(h, w, 4)[::-1, :, :3], 0, 1) * 255 + 0.5).astype(np.uint8)


# ------------------------------------------------------------------------------------------ entry point

def render_preview(scene, armature_obj, path, frame_start, frame_end, resolution=(480, 360), fps=None,
                   max_frames=GIF_MAX_FRAMES):
    """Render frames frame_start..frame_end of `scene` seen around `armature_obj` to `path` (.gif or .mp4).

    fps: the playback rate (default: the scene's). A GIF gets at most `max_frames` frames (stepping longer clips).
    Raises PreviewError with a one-line message. The scene is restored afterwards (see the module docstring).
    """
    import bpy
    ext = check_path(path)
    path = os.path.abspath(path)
    frame_end = max(int(frame_end), int(frame_start))
    frame_start = int(frame_start)
    scene_fps = scene.render.fps / scene.render.fps_base
    fps = float(fps or scene_fps)
    step = max(1, int(math.ceil((frame_end - frame_start + 1) / max_frames))) if ext == ".gif" else 1
    saved = _snapshot(scene)
    saved_world_color = tuple(scene.world.color) if scene.world else None
    view_layer = bpy.context.view_layer
    selected = [o for o in scene.objects if o.select_get()]
    active = view_layer.objects.active
    temp_objects, temp_data, tmpdir = [], [], tempfile.mkdtemp(prefix="motionmill_preview_")
    images_before = set(bpy.data.images.keys())  # rendering creates "Render Result" the first time
    try:
        pts, left = _bone_points(armature_obj, range(frame_start, frame_end + 1, max(1, (frame_end - frame_start) // 40 or 1)), scene)
        pts = pts.reshape(-1, 3)
        height = max(float(pts[:, 2].max() - pts[:, 2].min()), 0.1)
        coll = scene.collection
        if not _has_skinned_mesh(armature_obj):
            fig = _stand_in(armature_obj)
            mat = bpy.data.materials.new("MM_preview_figure")
            mat.diffuse_color = (*FIGURE_RGB, 1.0)
            fig.data.materials.append(mat)
            temp_objects.append(fig)
            temp_data += [fig.data, mat]
            coll.objects.link(fig)
        margin = max(1.0, 0.6 * height)
        ground, mats = _ground(pts[:, :2].min(0) - margin, pts[:, :2].max(0) + margin, float(pts[:, 2].min()) - 0.005,
                               tile=max(0.25, round(height / 3.5, 1)))
        temp_objects.append(ground)
        temp_data += [ground.data] + mats
        coll.objects.link(ground)
        cam_data = bpy.data.cameras.new("MM_preview_camera")
        cam = bpy.data.objects.new("MM_preview_camera", cam_data)
        temp_objects.append(cam)
        temp_data.append(cam_data)
        coll.objects.link(cam)
        w, h = (int(resolution[0]) // 2 * 2, int(resolution[1]) // 2 * 2)
        _frame_camera(cam, pts, left, w / h)
        if scene.world is None:
            world = bpy.data.worlds.new("MM_preview_world")
            temp_data.append(world)
            scene.world = world
        scene.world.color = BACKGROUND_RGB

        r = scene.render
        r.engine = "BLENDER_WORKBENCH"
        r.resolution_x, r.resolution_y, r.resolution_percentage = w, h, 100
        r.film_transparent = False
        r.use_stamp = False
        sh = scene.display.shading
        sh.light, sh.color_type, sh.show_shadows, sh.shadow_intensity = "STUDIO", "MATERIAL", True, 0.6
        sh.show_cavity = False
        scene.display.light_direction = (0.45, -0.35, 0.82)
        scene.view_settings.view_transform = "Standard"
        scene.camera = cam
        scene.frame_start, scene.frame_end, scene.frame_step = frame_start, frame_end, step
        if ext == ".mp4":
            r.fps, r.fps_base = int(round(fps)), round(fps) / fps if fps else 1.0
            if hasattr(r.image_settings, "media_type"):
                r.image_settings.media_type = "VIDEO"
            r.image_settings.file_format = "FFMPEG"
            r.ffmpeg.format, r.ffmpeg.codec = "MPEG4", "H264"
            r.ffmpeg.constant_rate_factor = "MEDIUM"
            r.ffmpeg.audio_codec = "NONE"
            r.filepath = os.path.join(tmpdir, "preview")
            r.use_file_extension = True
            bpy.ops.render.render(animation=True)
            made = [f for f in os.listdir(tmpdir) if f.lower().endswith(".mp4")]
            if not made:
                raise PreviewError(f"--preview {path}: Blender's FFMPEG output wrote no .mp4")
            shutil.move(os.path.join(tmpdir, made[0]), path)
        else:
            if hasattr(r.image_settings, "media_type"):
                r.image_settings.media_type = "IMAGE"
            r.image_settings.file_format = "PNG"
            r.image_settings.color_mode = "RGB"
            r.filepath = os.path.join(tmpdir, "f_#####")
            r.use_file_extension = True
            bpy.ops.render.render(animation=True)
            files = sorted(f for f in os.listdir(tmpdir) if f.endswith(".png"))
            if not files:
                raise PreviewError(f"--preview {path}: Workbench rendered no frames")
            frames = [_load_png(os.path.join(tmpdir, f)) for f in files]
            write_gif(path, frames, max(2, round(100.0 * step / fps)))
    except RuntimeError as err:
        raise PreviewError(f"--preview {path}: {str(err).replace('Error: ', '').strip().splitlines()[0]}") from None
    finally:
        for o in temp_objects:
            bpy.data.objects.remove(o, do_unlink=True)
        for d in temp_data:
            try:
                kind = {"Mesh": bpy.data.meshes, "Material": bpy.data.materials, "Camera": bpy.data.cameras,
                        "World": bpy.data.worlds}[type(d).__name__]
                kind.remove(d)
            except (KeyError, ReferenceError):
                pass
        for name in set(bpy.data.images.keys()) - images_before:
            bpy.data.images.remove(bpy.data.images[name])
        _restore_all(saved)
        if saved_world_color is not None and scene.world is not None:
            scene.world.color = saved_world_color
        view_layer.update()          # drop the removed objects' bases before walking the view layer
        selected = {o.name for o in selected}
        for o in scene.objects:
            if o.name in view_layer.objects:
                o.select_set(o.name in selected)
        view_layer.objects.active = active
        scene.frame_set(saved[0][1]["frame_current"])
        shutil.rmtree(tmpdir, ignore_errors=True)
    return path
