"""`python -m comfy_credits_ext` runs the operator CLI."""
import sys

from .cli import main

sys.exit(main())
