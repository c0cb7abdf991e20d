"""README.md's commands and Python example are the real ones."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme() -> str:
    with open(os.path.join(ROOT, "README.md")) as f:
        return f.read()


def test_readme_python_example_runs_as_written(capsys):
    block = re.search(r"```python\n(.*?)```", readme(), re.S).group(1)
    exec(compile(block, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "x_0_2" in printed and "head_2" in printed
    total, pruned = (int(n) for n in re.match(r"(\d+) -> (\d+)", printed).groups())
    assert pruned < total


def test_readme_names_the_two_commands_that_ci_runs():
    text = readme()
    assert "pip install -e . && python train.py --config configs/unetpp_l4.py" in text
    assert 'pip install -e ".[test]" && pytest -q' in text
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        ci = f.read()
    assert 'pip install -e ".[test]"' in ci and "pytest -q" in ci
    assert os.path.isfile(os.path.join(ROOT, "configs", "unetpp_l4.py"))
