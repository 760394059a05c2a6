"""Stage 5, track: detections matched across frames, each face's labels voted N of M.

    tracking.py  Tracker (IoU matching), Track, Votes per channel (pure: no I/O, no clock)

Imports nothing of the later stages (decide, act).
"""
