"""Stage 1 of the frame's flow, source: frames in, and whether they are worth a look.

    sources.py   FrameSource (picamera2 with its lores stream, OpenCV device/stream/file,
                 image folder), make_source, and Capture, the reading thread
    demo.py      the built-in ``demo`` source: a synthetic doorway clip
    motion.py    MotionGate: the detector runs only when something moves

Imports nothing of the later stages (infer, track, decide, act).
"""
