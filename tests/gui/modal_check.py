"""The add-on's interactive path in a real windowed Blender: the modal, timer-driven Generate, Esc, the panel.

Run inside a Blender that has a window (not the bpy module, not -b), with event simulation on:

    blender --factory-startup --enable-event-simulate --python tests/gui/modal_check.py -- \
        --out result.json --backend-python .venv/bin/python --model-dir ../shared/conformance/motionmillion-tiny/model

(tests/gui/blender_chroot.sh is such a Blender; tests/test_gui_modal.py runs this and checks the JSON.)
BLENDER_USER_RESOURCES must name a throw-away folder: the extension is installed into its user repository.

Once the window is up, a bpy.app.timers generator (one step every 50 ms) builds the extension zip, installs it
with Install from Disk, sets its preferences, builds a Mixamo-style rig and runs, each as a user would, from the
3D Viewport with the MotionMill sidebar tab showing:
  1. generate ('INVOKE_DEFAULT'): records every status/progress the panel showed, the gaps between timer ticks
     (the UI never blocks), then checks the new action (named after the prompt, keyed, in the history);
  2. generate 10 s, with Esc (window.event_simulate) once the panel shows the first "token" status: generation
     stops mid-way, no action, history entry or clip file is added, the rig keeps run 1's action, and the
     backend service stays up;
  3. generate again: succeeds on the same backend process; then Ctrl+Z (simulated) takes that clip off the rig.
Everything measured goes to --out; the process exits 0 only when every check passed (1: a check failed,
2: an exception, 3: the watchdog fired).
"""
import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import bpy

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TICK = 0.05

RESULT = {"checks": {}, "failures": [], "runs": {}}


def parse_args():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    p = argparse.ArgumentParser(prog="modal_check.py")
    p.add_argument("--out", required=True)
    p.add_argument("--backend-python", required=True)
    p.add_argument("--model-dir", required=True)
    p.add_argument("--backend-dir", default=ROOT)
    p.add_argument("--timeout", type=float, default=400.0, help="watchdog for the whole check, seconds")
    p.add_argument("--shots", default="", help="a folder for screenshots of the window (xwd files)")
    return p.parse_args(argv)


ARGS = parse_args()


def write_result():
    tmp = ARGS.out + ".part"
    with open(tmp, "w") as f:
        json.dump(RESULT, f, indent=1, sort_keys=True, default=str)
    os.replace(tmp, ARGS.out)


def check(name, ok, detail=""):
    RESULT["checks"][name] = bool(ok)
    if not ok:
        RESULT["failures"].append(f"{name}: {detail}" if detail else name)
        print(f"modal_check: FAILED {name} {detail}", flush=True)
    return ok


def finish(code):
    RESULT["exit_code"] = code
    write_result()
    print(f"modal_check: exit {code}, failures: {RESULT['failures']}", flush=True)
    if code == 0:
        bpy.ops.wm.quit_blender()
    else:
        sys.stdout.flush()
        os._exit(code)


def watchdog():
    RESULT["failures"].append(f"watchdog: the check did not end within {ARGS.timeout:g} s")
    RESULT["exit_code"] = 3
    try:
        write_result()
    finally:
        os._exit(3)


# ------------------------------------------------------------------------------------------ set-up

def load_file_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def install_extension():
    """Build the extension zip from this checkout and install it with Install from Disk, as the guide says."""
    user = os.environ.get("BLENDER_USER_RESOURCES", "")
    if not user or not bpy.utils.resource_path("USER").startswith(os.path.abspath(user)):
        raise SystemExit("BLENDER_USER_RESOURCES must name a throw-away folder (the extension is installed there)")
    package = load_file_module("motionmill_package", os.path.join(ROOT, "blender_addon", "package.py"))
    _, ext = package.build(tempfile.mkdtemp(prefix="motionmill-dist-"))
    r = bpy.ops.extensions.package_install_files(filepath=ext, repo="user_default", enable_on_install=True)
    check("extension_installed", r == {"FINISHED"}, str(r))
    pkg = "bl_ext.user_default.motionmill"
    check("extension_enabled", pkg in bpy.context.preferences.addons, str(list(bpy.context.preferences.addons.keys())))
    return pkg


def view3d(window):
    area = next(a for a in window.screen.areas if a.type == "VIEW_3D")
    region = next(r for r in area.regions if r.type == "WINDOW")
    sidebar = next(r for r in area.regions if r.type == "UI")
    return area, region, sidebar


class PanelSpy:
    """Appended to the add-on's panel: records what each real draw of the panel showed (running, status)."""

    def __init__(self, panel_cls):
        self.panel_cls, self.draws = panel_cls, []

    def __call__(self, panel, context):
        rt = context.window_manager.motionmill
        self.draws.append((time.monotonic(), rt.running, rt.status, round(rt.progress, 3)))


def action_fcurves(action):
    curves = list(getattr(action, "fcurves", None) or [])
    if not curves and hasattr(action, "layers"):
        for layer in action.layers:
            for strip in layer.strips:
                for bag in getattr(strip, "channelbags", ()):
                    curves += list(bag.fcurves)
    return curves


def shot(name):
    """The whole screen into --shots/NAME.xwd (bpy.ops.screen.screenshot reads black with llvmpipe under Xvfb)."""
    if not ARGS.shots:
        return
    os.makedirs(ARGS.shots, exist_ok=True)
    path = os.path.join(ARGS.shots, name + ".xwd")
    r = subprocess.run(["xwd", "-root", "-silent", "-out", path], capture_output=True, text=True)
    RESULT.setdefault("shots", {})[name] = path if r.returncode == 0 else f"xwd failed: {r.stderr.strip()}"


def action_keys(action):
    curves = action_fcurves(action)
    return len(curves), sum(len(fc.keyframe_points) for fc in curves)


def text_px(text):
    """Width in pixels of `text` in Blender's UI font at the interface scale."""
    import blf
    prefs = bpy.context.preferences
    blf.size(0, prefs.ui_styles[0].widget.points * prefs.system.ui_scale)
    return blf.dimensions(0, text)[0]


def rows_fit(sidebar, s, obj, mods):
    """Check that no Clips or Bone Map row is cut at the sidebar's default width."""
    scale = bpy.context.preferences.system.ui_scale
    RESULT["sidebar_width_px"] = sidebar.width
    check("sidebar_at_default_width", abs(sidebar.width - round(291 * scale)) <= 30 * scale, str(sidebar.width))
    row = sidebar.width - 60 * scale          # panel and list margins, the list's own padding
    cut = [h.prompt for h in s.history if text_px(h.prompt) + 28 * scale > row]
    check("clips_rows_not_cut", s.history and not cut, f"cut at {row:.0f} px: {cut}")
    with bpy.context.temp_override(active_object=obj):
        bpy.ops.motionmill.bone_map_edit()
    yield
    inner = row - 24 * scale                  # the eyedropper button
    roles = obj.data.motionmill_bone_map.roles
    cut = []
    for e in roles:
        role, bone = mods["ui_bonemap"].row_texts(obj.data, e.name, e.bone)
        if text_px(role) + 10 * scale > 0.36 * inner or text_px(bone) + 14 * scale > 0.64 * inner:
            cut.append(f"{role}: {bone}")
    check("bone_map_rows_not_cut", len(roles) and not cut, f"cut at {inner:.0f} px: {cut}")
    RESULT["bone_map_rows"] = [list(mods["ui_bonemap"].row_texts(obj.data, e.name, e.bone)) for e in roles][:6]
    bpy.ops.motionmill.bone_map_clear()


# ------------------------------------------------------------------------------------------ the check

def script():
    """The whole check as a generator: each bare `yield` lets Blender run for one timer step (TICK)."""
    import addon_utils  # noqa: F401  (Blender's own; present in a full Blender)
    win = bpy.context.window_manager.windows[0]
    RESULT["blender"] = bpy.app.version_string
    RESULT["python"] = sys.version.split()[0]
    RESULT["background"] = bpy.app.background
    try:
        import gpu
        RESULT["gpu"] = f"{gpu.platform.renderer_get()} / {gpu.platform.version_get()}"
    except Exception as err:   # informational only
        RESULT["gpu"] = repr(err)
    check("windowed", not bpy.app.background and len(bpy.context.window_manager.windows) >= 1)

    win.event_simulate(type="ESC", value="PRESS")   # close the splash screen, as a user does first
    win.event_simulate(type="ESC", value="RELEASE")
    pkg = install_extension()
    mods = {n: sys.modules[f"{pkg}.{n}"] for n in ("session", "ops", "ui", "ui_bonemap", "_rt", "paths")}
    SESSION = mods["session"].SESSION
    RESULT["retarget_package"] = mods["_rt"]._name
    check("bundled_retarget", mods["_rt"]._name == f"{pkg}.retarget", mods["_rt"]._name)
    # in Blender itself the Armature picker filters armatures (the PointerProperty's poll), on every version
    target = sys.modules[f"{pkg}.props"].MOTIONMILL_PG_settings.__annotations__["target"]
    check("target_picker_filters_armatures", "poll" in getattr(target, "keywords", {}), str(target))
    prefs = bpy.context.preferences.addons[pkg].preferences
    prefs.backend_python, prefs.backend_dir, prefs.model_dir = ARGS.backend_python, ARGS.backend_dir, ARGS.model_dir
    prefs.device = "cpu"
    clips_dir = mods["paths"].clips_dir()
    RESULT["clips_dir"] = clips_dir

    # the rig, as the add-on tests build it (tests/rigs.py; it needs the checkout's retarget for Skeleton)
    sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]
    import rigs
    rigs.clear_scene()
    obj = rigs.mixamo_rig()
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base, scene.frame_current = 24, 1.0, 1
    s = scene.motionmill
    s.target, s.cleanup_feet, s.placement, s.root_motion, s.temperature, s.seed = obj, False, "INSERT", "hips", 0.0, 1

    area, region, sidebar = view3d(win)
    area.spaces.active.show_region_ui = True
    yield
    try:
        sidebar.active_panel_category = "MotionMill"
    except (AttributeError, TypeError) as err:
        RESULT["sidebar_tab_note"] = repr(err)
    spy = PanelSpy(getattr(bpy.types, "MOTIONMILL_PT_panel"))
    spy.panel_cls.append(spy)
    viewport_draws = []   # draws of the 3D viewport itself (its WINDOW region), the expensive redraw
    vp_handle = bpy.types.SpaceView3D.draw_handler_add(lambda: viewport_draws.append(time.monotonic()), (),
                                                       "WINDOW", "POST_PIXEL")
    for _ in range(100):   # let the window draw the sidebar with the tab
        if spy.draws:
            break
        area.tag_redraw()
        yield
    check("panel_drawn", len(spy.draws) > 0, "the MotionMill panel never drew in the sidebar")
    shot("panel-idle")
    # the timer's own rhythm with nothing running: the baseline for the gaps measured during generation
    ticks = [time.monotonic()]
    for _ in range(40):
        yield
        ticks.append(time.monotonic())
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    RESULT["idle"] = {"max_tick_gap_ms": round(1000 * max(gaps), 1), "mean_tick_gap_ms": round(1000 * sum(gaps) / len(gaps), 1)}

    def invoke():
        with bpy.context.temp_override(window=win, area=area, region=region):
            return bpy.ops.motionmill.generate("INVOKE_DEFAULT")

    def run(label, prompt, seconds, esc=False, blocking_checked=True):
        """Generator: invoke Generate, sample the panel's properties every tick until it stops running.
        blocking_checked=False records the gaps between timer ticks without checking them (the Rigify run: the
        retarget and control solve run on Blender's main thread, and llvmpipe draws Rigify's widgets slowly)."""
        s.prompt, s.seconds, s.auto_length = prompt, seconds, False
        rt = bpy.context.window_manager.motionmill
        info = {"prompt": prompt, "seconds": seconds, "statuses": [], "progress": [], "esc": None}
        RESULT["runs"][label] = info
        n_draws, n_vp = len(spy.draws), len(viewport_draws)
        t0 = time.monotonic()
        info["invoke_result"] = sorted(invoke())
        info["invoke_s"] = round(time.monotonic() - t0, 3)
        ticks = [time.monotonic()]
        tick_status = [rt.status]
        while True:
            if rt.status and (not info["statuses"] or info["statuses"][-1] != rt.status):
                info["statuses"].append(rt.status)
            if not info["progress"] or info["progress"][-1] != round(rt.progress, 3):
                info["progress"].append(round(rt.progress, 3))
            if esc and info["esc"] is None and rt.running and rt.status.startswith("generating "):
                win.event_simulate(type="ESC", value="PRESS")
                win.event_simulate(type="ESC", value="RELEASE")
                info["esc"] = {"at_s": round(time.monotonic() - t0, 3), "status_then": rt.status}
                esc_t = time.monotonic()
            if not rt.running:
                break
            if time.monotonic() - t0 > 240:
                check(f"{label}_finished", False, "still running after 240 s")
                break
            yield
            ticks.append(time.monotonic())
            tick_status.append(rt.status)
        t_end = time.monotonic()
        gaps = [b - a for a, b in zip(ticks, ticks[1:])]
        info.update(duration_s=round(t_end - t0, 3), ticks=len(ticks), final_status=rt.status,
                    max_tick_gap_ms=round(1000 * max(gaps), 1) if gaps else None,
                    mean_tick_gap_ms=round(1000 * sum(gaps) / len(gaps), 1) if gaps else None)
        worst = sorted(range(len(gaps)), key=lambda i: -gaps[i])[:3]
        info["largest_gaps"] = [[round(1000 * gaps[i], 1), tick_status[i], tick_status[i + 1]] for i in sorted(worst)]
        drawn = spy.draws[n_draws:]
        info["panel_draws"] = len(drawn)
        info["viewport_draws"] = len(viewport_draws) - n_vp
        info["panel_statuses_while_running"] = list(dict.fromkeys(d[2] for d in drawn if d[1]))
        if esc and info["esc"] is not None:
            info["esc"]["to_stopped_s"] = round(t_end - esc_t, 3)
        check(f"{label}_invoked_modal", info["invoke_result"] == ["RUNNING_MODAL"], str(info["invoke_result"]))
        check(f"{label}_invoke_returned_fast", info["invoke_s"] < 2.0, f"invoke took {info['invoke_s']} s")
        if blocking_checked:
            check(f"{label}_ui_never_blocked", gaps and max(gaps) < 1.0,
                  f"largest gap between timer ticks {info['max_tick_gap_ms']} ms")
        if label not in ("run3", "run5"):   # runs 3 and 5 (model loaded, 2 s) can be over within a tick or two
            check(f"{label}_panel_redrawn_while_running", len(info["panel_statuses_while_running"]) >= 2,
                  str(info["panel_statuses_while_running"]))
        return info

    # ---- run 1: a clip, start to end
    scene.frame_current = 11
    n_actions = len(bpy.data.actions)
    info = yield from run("run1", "a person walks forward", 2.0)
    act = obj.animation_data.action if obj.animation_data else None
    check("run1_done", info["final_status"] == "done: 1 clip", info["final_status"])
    # the 3D viewport is redrawn for what changed (each status, the new pose), not on every timer tick
    check("run1_viewport_not_redrawn_every_tick", info["viewport_draws"] <= len(info["statuses"]) + 3,
          f"{info['viewport_draws']} viewport redraws for {len(info['statuses'])} statuses in {info['ticks']} ticks")
    check("run1_says_starting_backend", info["statuses"][0] == "starting the backend…", str(info["statuses"]))
    check("run1_says_loading_the_model", "loading the model (first time only)…" in info["statuses"],
          str(info["statuses"]))
    tokens = [st for st in info["statuses"] if re.fullmatch(r"generating \d+%( · about \d+ s left)?", st)]
    check("run1_progress_in_percent", len(tokens) >= 1, str(info["statuses"]))
    check("run1_progress_rises", info["progress"][-1] == 1.0 and any(0.1 < p < 0.9 for p in info["progress"]),
          str(info["progress"]))
    check("run1_action_created", act is not None and len(bpy.data.actions) == n_actions + 1)
    if act is not None:
        fcurves, keys = action_keys(act)
        info.update(action=act.name, fcurves=fcurves, keys=keys, frame_range=list(act.frame_range))
        check("run1_action_named_after_prompt", act.name == "a person walks forward", act.name)
        check("run1_action_keyed", fcurves > 0 and keys > fcurves, f"{fcurves} F-curves, {keys} keys")
        check("run1_action_at_current_frame", act.frame_range[0] == 11, str(list(act.frame_range)))
        check("run1_in_history", len(s.history) and s.history[-1].action == act)
        check("run1_clip_file", os.path.isfile(act.get("motionmill_path", "")) and
              act["motionmill_path"].startswith(clips_dir), act.get("motionmill_path"))
    check("run1_backend_alive", SESSION.alive)
    pid = SESSION.client.pid if SESSION.client else None

    # ---- run 2: Esc once the first "token" status shows
    for _ in range(5):
        yield
    before = dict(actions=sorted(a.name for a in bpy.data.actions), history=len(s.history),
                  clips=sorted(os.listdir(clips_dir)), active=act.name if act else None)
    info = yield from run("run2_esc", "a person runs in a circle", 10.0, esc=True)
    check("run2_esc_pressed", info["esc"] is not None, "no 'generating' status was ever shown")
    check("run2_cancelled", info["final_status"] == "cancelled", info["final_status"])
    check("run2_backend_not_starting_again", "starting the backend…" not in info["statuses"], str(info["statuses"]))
    last_token = [st for st in info["statuses"] if st.startswith("generating ")]
    if last_token:
        percent = int(re.match(r"generating (\d+)%", last_token[-1]).group(1))
        info["last_percent"] = percent
        check("run2_stopped_mid_way", percent < 100, last_token[-1])
    check("run2_no_new_action", sorted(a.name for a in bpy.data.actions) == before["actions"])
    check("run2_no_new_history", len(s.history) == before["history"])
    check("run2_no_new_clip_file", sorted(os.listdir(clips_dir)) == before["clips"])
    check("run2_rig_keeps_run1_action", obj.animation_data.action is not None and
          obj.animation_data.action.name == before["active"])
    if info["esc"]:
        check("run2_stopped_quickly", info["esc"]["to_stopped_s"] < 5.0, str(info["esc"]))
    check("run2_backend_still_up", SESSION.alive and SESSION.client.pid == pid)

    # ---- run 3: Blender and the backend are still usable; then Ctrl+Z takes the clip off again
    for _ in range(5):
        yield
    info = yield from run("run3", "a person waves", 2.0)
    act3 = obj.animation_data.action
    check("run3_done", info["final_status"] == "done: 1 clip", info["final_status"])
    check("run3_new_action", act3 is not None and act3.name == "a person waves", act3 and act3.name)
    check("run3_same_backend", SESSION.client is not None and SESSION.client.pid == pid)
    rig_name = obj.name

    def ctrl_z():
        """Generator: press Ctrl+Z, let Blender undo; returns the rig and its active action, looked up again (undo
        reloads the scene data, so every Python reference to it is stale), and points the panel back at the rig."""
        for _ in range(3):
            yield
        win.event_simulate(type="Z", value="PRESS", ctrl=True)
        win.event_simulate(type="Z", value="RELEASE", ctrl=True)
        for _ in range(10):
            yield
        rig = bpy.data.objects.get(rig_name)
        bpy.context.scene.motionmill.target = rig
        return rig, rig.animation_data.action if rig is not None and rig.animation_data else None

    obj, after = yield from ctrl_z()
    RESULT["undo"] = {"active_after_ctrl_z": after.name if after else None,
                      "history_after_ctrl_z": len(bpy.context.scene.motionmill.history)}
    check("ctrl_z_undoes_run3", after is not None and after.name == "a person walks forward",
          RESULT["undo"]["active_after_ctrl_z"])
    s = bpy.context.scene.motionmill
    rt = bpy.context.window_manager.motionmill
    shot("panel-done")

    # ---- run 4: an error stays readable in the panel, in red; the next run starts from a clean status
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    bpy.context.scene.collection.objects.link(camera)
    s.target = camera
    with bpy.context.temp_override(window=win, area=area, region=region):
        try:
            bpy.ops.motionmill.generate("INVOKE_DEFAULT")
        except RuntimeError as err:   # refused by its poll: the reason is what the panel shows too
            RESULT["run4_refused"] = str(err)
    check("run4_panel_names_the_problem", "not an armature" in (RESULT.get("run4_refused") or ""),
          RESULT.get("run4_refused"))
    s.target = obj
    rt.status, rt.failed = "backend: an earlier error", True   # as a failed run leaves it
    yield
    info = yield from run("run5", "a person jumps", 2.0)
    check("run5_status_reset", info["statuses"][0] != "backend: an earlier error" and not rt.failed,
          str(info["statuses"][:2]))

    # ---- Continue: a new action carrying the active one on; Ctrl+Z takes it off in one step
    old_name = obj.animation_data.action.name
    s.prompt, s.seconds = "then the person sits down", 2.0
    with bpy.context.temp_override(window=win, area=area, region=region):
        RESULT["continue_invoke"] = sorted(bpy.ops.motionmill.continue_action("INVOKE_DEFAULT"))
    t0 = time.monotonic()
    while rt.running and time.monotonic() - t0 < 240:
        yield
    cont = obj.animation_data.action
    cont_name = cont.name if cont is not None else ""
    RESULT["continue"] = {"status": rt.status, "action": cont_name}
    check("continue_done", rt.status.startswith("done") and cont_name.startswith(old_name + " + "),
          str(RESULT["continue"]))
    check("continue_keeps_the_old_action", bpy.data.actions.get(old_name) is not None)
    obj, after = yield from ctrl_z()
    RESULT["continue"]["active_after_ctrl_z"] = after.name if after else None
    check("ctrl_z_undoes_continue", after is not None and after.name == old_name
          and bpy.data.actions.get(cont_name) is None, str(RESULT["continue"]))
    s = bpy.context.scene.motionmill
    rt = bpy.context.window_manager.motionmill

    # ---- batch: after a Generate (its clip is the active action) the batch's strips are what plays
    txt = bpy.data.texts.new("shot prompts")
    txt.write("a person waves\na person sits down\n")
    s.prompt, s.prompt_text, s.placement = "", txt, "INSERT"
    bpy.context.scene.frame_current = int(obj.animation_data.action.frame_range[1]) + 1
    with bpy.context.temp_override(window=win, area=area, region=region):
        RESULT["batch_invoke"] = sorted(bpy.ops.motionmill.generate_batch("INVOKE_DEFAULT"))
    shot_taken = False
    t0 = time.monotonic()
    while rt.running and time.monotonic() - t0 < 240:
        yield
        if not shot_taken and rt.status.startswith("generating "):
            yield   # one more tick: the sidebar has drawn the new status
            shot("panel-generating")
            shot_taken = True
    ad = obj.animation_data
    strips = list(ad.nla_tracks["MotionMill"].strips) if ad.nla_tracks.get("MotionMill") else []
    check("batch_strips", len(strips) == 2, f"{len(strips)} strips")
    visible = []
    for strip in strips:
        mid = int((strip.frame_start + strip.frame_end) // 2)
        bpy.context.scene.frame_set(mid)
        got = obj.pose.bones["mixamorig:Hips"].location.copy()
        fcs = [fc for fc in action_fcurves(strip.action) if fc.data_path == 'pose.bones["mixamorig:Hips"].location']
        want = [fc.evaluate(strip.action_frame_start + mid - strip.frame_start) for fc in sorted(fcs, key=lambda f: f.array_index)]
        visible.append(bool(fcs) and max(abs(a - b) for a, b in zip(got, want)) < 1e-3)
    check("batch_strips_visible_over_the_active_action", visible and all(visible), str(visible))
    check("batch_active_action_pushed_down", ad.action is None, str(ad.action))
    # Blender's redo panel shows the last operator that is both REGISTER and UNDO (WM_operator_last_redo)
    redo = [op.bl_idname for op in bpy.context.window_manager.operators if {"REGISTER", "UNDO"} <= set(op.bl_options)]
    RESULT["redo_candidates"] = redo[-3:]
    check("batch_not_in_redo_panel", not redo or redo[-1] != "MOTIONMILL_OT_generate_batch", str(redo[-3:]))
    bpy.context.scene.frame_set(int(strips[0].frame_start) if strips else 1)
    for _ in range(10):
        yield
    shot("panel-batch-done")

    # ---- at Blender's default sidebar width, the Clips and Bone Map rows give their names the room: each text, as
    # Blender's UI font draws it (blf), fits the width its column gets (generous margins for padding and icons)
    yield from rows_fit(sidebar, s, obj, mods)
    area.type = "NLA_EDITOR"   # the picture of the strips: the 3D View's area shows the NLA editor for a moment
    nla_region = next(r for r in area.regions if r.type == "WINDOW")
    for _ in range(5):
        yield
    with bpy.context.temp_override(window=win, area=area, region=nla_region):
        bpy.ops.nla.view_all()
    for _ in range(10):
        yield
    shot("nla-batch")
    area.type = "VIEW_3D"
    for _ in range(5):
        yield

    # ---- the doctor runs in the background: the timer keeps ticking
    with bpy.context.temp_override(window=win, area=area, region=region):
        RESULT["doctor_invoke"] = sorted(bpy.ops.motionmill.doctor("INVOKE_DEFAULT"))
    ticks = [time.monotonic()]
    while rt.doctor_running and time.monotonic() - ticks[0] < 150:
        yield
        ticks.append(time.monotonic())
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    RESULT["doctor"] = {"seconds": round(ticks[-1] - ticks[0], 2), "max_tick_gap_ms": round(1000 * max(gaps), 1) if gaps else None}
    check("doctor_ran_in_background", RESULT["doctor_invoke"] == ["RUNNING_MODAL"] and len(ticks) > 3, str(RESULT["doctor"]))
    check("doctor_never_blocked", gaps and max(gaps) < 0.5, str(RESULT["doctor"]))
    check("doctor_report_kept", '"model"' in rt.doctor_output, rt.doctor_output[-200:])

    # ---- a Rigify character (Blender's bundled Rigify, a body mesh bound to its DEF bones): Generate keys its
    # controls, never its DEF/ORG/MCH bones, and the body plays the clip; the picture shows it mid-clip
    import addon_utils
    rigs.clear_scene()
    addon_utils.enable("rigify", default_set=True)
    with bpy.context.temp_override(window=win, area=area, region=region):
        bpy.ops.object.armature_human_metarig_add()
        bpy.ops.pose.rigify_generate()
    bpy.data.objects.remove(bpy.data.objects["metarig"])
    rig = bpy.data.objects["rig"]
    body = rigs.skin_a_body(rig)
    s.target, s.placement, s.cleanup_feet, s.controls, s.prompt_text = rig, "INSERT", True, "ik-legs", None
    bpy.context.scene.frame_current = 1
    info = yield from run("rigify", "a person walks forward", 4.0, blocking_checked=False)
    act = rig.animation_data.action if rig.animation_data else None
    keyed = sorted({fc.data_path.split('"')[1] for fc in action_fcurves(act) if fc.data_path.startswith("pose.bones[")}
                   if act else ())
    info["keyed_bones"] = keyed
    check("rigify_done", info["final_status"] == "done: 1 clip", info["final_status"])
    check("rigify_keys_on_controls_only", keyed and not [b for b in keyed if b.startswith(("DEF-", "ORG-", "MCH-"))]
          and "foot_ik.L" in keyed and "torso" in keyed, str(keyed))
    if act is not None:
        first, last = (int(f) for f in act.frame_range)
        info["mid_frame"] = (first + last) // 2
        bpy.context.scene.frame_set(info["mid_frame"])
    for o in bpy.context.view_layer.objects:
        o.select_set(o == body)
    bpy.context.view_layer.objects.active = body
    with bpy.context.temp_override(window=win, area=area, region=region):
        bpy.ops.view3d.view_axis(type="FRONT")
        bpy.ops.view3d.view_selected()
    for _ in range(10):
        area.tag_redraw()
        yield
    shot("rigify-mid-clip")

    spy.panel_cls.remove(spy)
    bpy.types.SpaceView3D.draw_handler_remove(vp_handle, "WINDOW")
    SESSION.close()


def main():
    dog = threading.Timer(ARGS.timeout, watchdog)
    dog.daemon = True   # a live non-daemon thread would hold quit_blender at interpreter shutdown
    dog.start()
    gen = script()
    state = {"n": 0}

    def step():
        state["n"] += 1
        try:
            next(gen)
            return TICK
        except StopIteration:
            pass
        except SystemExit as err:
            RESULT["failures"].append(f"set-up: {err}")
            finish(1)
            return None
        except Exception:
            RESULT["failures"].append("exception: " + traceback.format_exc())
            print(traceback.format_exc(), flush=True)
            finish(2)
            return None
        finish(1 if RESULT["failures"] else 0)
        return None

    # first_interval: let the window open and draw once before anything runs
    bpy.app.timers.register(step, first_interval=1.0)


main()
