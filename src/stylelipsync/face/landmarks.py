"""Index sets of MediaPipe's 478-point face mesh (468 mesh points + 10 iris points with refine_landmarks).

Every consumer (crop, pose fit, mask, tests) takes its indices from here, so the choice of which points count
as "rigid" is made once. Names follow the subject's anatomy: the subject's right eye appears on the image's
left.
"""

from __future__ import annotations

NUM_LANDMARKS = 478
NUM_MESH = 468

RIGHT_EYE_OUTER = 33
RIGHT_EYE_INNER = 133
LEFT_EYE_INNER = 362
LEFT_EYE_OUTER = 263
NASION = 168
NOSE_BRIDGE = 6
PRONASALE = 4
NOSE_TIP_LOWER = 1
SUBNASALE = 2
UPPER_LIP_TOP = 0
INNER_LIP_TOP = 13
INNER_LIP_BOTTOM = 14
LOWER_LIP_BOTTOM = 17
CHIN = 152
FOREHEAD_TOP = 10

RIGHT_EYE = (RIGHT_EYE_OUTER, RIGHT_EYE_INNER)
LEFT_EYE = (LEFT_EYE_INNER, LEFT_EYE_OUTER)

# Points that do not move when the jaw, lips or cheeks move: eye corners (not lids, they blink), the nose
# from nasion to tip and the forehead midline. Pose, crop and mask are computed from these only, so none of
# them can carry the current mouth state. Temples and the lateral forehead were tried too and left out:
# FaceMesh places them less consistently (hair line, silhouette), and the eye/nose reprojection error rose
# from 0.2–0.6 px to 0.3–0.9 px (mean, 256² crop) on the shared clips.
RIGID = (
    RIGHT_EYE_OUTER, RIGHT_EYE_INNER, LEFT_EYE_INNER, LEFT_EYE_OUTER,
    NASION, NOSE_BRIDGE, 197, 195, 5, PRONASALE,
    FOREHEAD_TOP, 151, 9, 8,
)  # fmt: skip

# Closed loop around the face, clockwise in the image starting at the forehead top.
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip

# Lower part of the oval from the subject's left cheek (454, image right) over the chin to the right cheek
# (234).
LOWER_FACE_OVAL = (
    454, 323, 361, 288, 397, 365, 379, 378, 400, 377, CHIN, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234,
)  # fmt: skip

LIPS_OUTER = (
    61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185,
)  # fmt: skip
LIPS_INNER = (
    78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191,
)  # fmt: skip
