"""Recipes: finding and reading a recipe file (source), building and checking its
transforms (build), the project's own transforms, preprocessing and mixing.
"""
