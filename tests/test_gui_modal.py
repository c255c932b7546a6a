"""The add-on's interactive path — the modal, timer-driven Generate in a real windowed Blender: the progress bar
and status while the backend runs, Blender staying responsive, Esc stopping generation mid-way, Ctrl+Z.

The bpy module has no window and its timers never fire, so this needs a full Blender with a window. Set
MOTIONMILL_BLENDER_GUI to a command that starts one with the arguments it is given, e.g. the chroot + Xvfb wrapper
`tests/gui/blender_chroot.sh` (set-up in docs/addon.md, "Checking the interactive path in a windowed Blender").
Without it the test is skipped (CI has no windowed Blender). The check itself is tests/gui/modal_check.py; it
runs inside that Blender and writes what it measured to a JSON file, which this test reads.
"""
import json
import os
import shlex
import subprocess

import pytest

from conftest import BACKEND_PYTHON, ROOT, shared_path

GUI = os.environ.get("MOTIONMILL_BLENDER_GUI", "")


@pytest.mark.skipif(not GUI, reason="no windowed Blender: set MOTIONMILL_BLENDER_GUI to a command that starts one "
                                    "(e.g. tests/gui/blender_chroot.sh, see docs/addon.md)")
def test_modal_generate_progress_esc_and_undo_in_a_windowed_blender(tmp_path):
    model = shared_path("conformance", "motionmillion-tiny", "model")
    out = tmp_path / "result.json"
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "blender-user"),
               MOTIONMILL_DATA=str(tmp_path / "data"), MOTIONMILL_CONFIG=str(tmp_path / "config.json"))
    cmd = shlex.split(GUI) + ["--factory-startup", "--enable-event-simulate", "--python",
                              str(ROOT / "tests" / "gui" / "modal_check.py"), "--",
                              "--out", str(out), "--backend-python", BACKEND_PYTHON, "--model-dir", str(model),
                              "--backend-dir", str(ROOT), "--timeout", "600",
                              "--shots", os.environ.get("MOTIONMILL_GUI_SHOTS", "")]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=700)
    log = (r.stdout + r.stderr)[-4000:]
    assert out.exists(), f"the check wrote no result (exit {r.returncode}):\n{log}"
    res = json.loads(out.read_text())
    assert res["failures"] == [] and r.returncode == 0, (res["failures"], r.returncode, log)
    assert res["background"] is False
    # every check the script knows ran (a check skipped by an early exception would be missing here)
    for name in ("windowed", "extension_enabled", "panel_drawn", "run1_done", "run1_ui_never_blocked",
                 "run1_action_named_after_prompt", "run1_action_keyed", "run1_viewport_not_redrawn_every_tick",
                 "run2_esc_pressed", "run2_cancelled", "run2_stopped_mid_way", "run2_no_new_action",
                 "run2_no_new_clip_file", "run2_backend_still_up", "run3_done", "run3_same_backend",
                 "ctrl_z_undoes_run3", "run1_says_loading_the_model", "run1_progress_in_percent",
                 "run4_panel_names_the_problem", "run5_status_reset", "continue_done", "ctrl_z_undoes_continue", "target_picker_filters_armatures", "batch_strips",
                 "batch_strips_visible_over_the_active_action", "batch_not_in_redo_panel", "doctor_ran_in_background",
                 "doctor_never_blocked", "rigify_done", "rigify_keys_on_controls_only", "sidebar_at_default_width",
                 "clips_rows_not_cut", "bone_map_rows_not_cut"):
        assert res["checks"].get(name) is True, name
    run1, run2 = res["runs"]["run1"], res["runs"]["run2_esc"]
    assert any(s.startswith("generating ") for s in run1["panel_statuses_while_running"]), run1
    assert run2["esc"]["to_stopped_s"] < 5.0 and run2["final_status"] == "cancelled", run2
