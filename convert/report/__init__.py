"""Write what a build produces: a model's files all together or none (outputs), the mask classifier's card
and its measured notes (cards/).

Imports only the stages below it.
"""
