"""Read the labelled photos: image folders, VOC boxes, the dataroots CSV, face crops (``doorguard dataset``).

The bottom layer of the toolchain: imports nothing else of convert/.
"""
