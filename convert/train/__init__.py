"""Training from labelled photos: the darknet detector (with teacher boxes) and the MobileNet classifier
(its data, recipe, synthetic masks, operating point), each finished by a converter of pipeline/.

Imports every stage below it.
"""
