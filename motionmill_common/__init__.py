"""What both sides of MotionMill share, standard library only (no torch, no bpy): the user's folders and settings
(`folders`) and the client of `python -m backend serve` (`client`). The backend, the installer and the add-on
import it; the add-on zip bundles it (blender_addon/package.py) and the add-on imports it through _common.py."""
