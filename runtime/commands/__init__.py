"""The `irules` commands that live in modules of their own."""
