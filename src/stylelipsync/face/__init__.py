"""Face stage: find, follow, crop, mask and paste back one face per video (see docs/face.md).

Modules, one job each:

* `landmarks` - index sets of MediaPipe's 478-point mesh (rigid points, face oval, lips);
* `detect` - `FaceDetector`: BlazeFace + FaceMesh landmarks in frame pixels;
* `track` - `track_face` → `FaceTrack`: one identity over a streamed video, gap filling, smoothing;
* `crop` - per-frame 256² similarity crops aligned on eyes and nose, warps and their inverse;
* `geometry` - the person's 3-D face shape and per-frame head pose from rigid points;
* `mask` - the pose-aware lower-face mask (spec §3.5) and the official keep-mask (spec §3.3);
* `paste` - `paste_back`: feathered, colour-matched compositing of a generated crop into the frame.
"""
