"""The standard library of .irules files, installed as the package `irules_rules`.

This file makes the folder a regular package, so that `importlib.resources`
returns a real folder for it. The loader reads the `.irules` files beside it.
"""
