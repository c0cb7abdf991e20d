"""`python -m unetjax.plan DATA`: the same as `unetjax-plan` (see unetjax/cli/plan.py)."""

import sys

from unetjax.cli import plan

if __name__ == "__main__":
    sys.exit(plan.run())
