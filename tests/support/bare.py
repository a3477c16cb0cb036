"""Python source for a child process in which pandas cannot be imported, as in a bare install
(prepend it to the child's own code)."""

NO_PANDAS = """
import sys


class NoPandas:  # import pandas -> ModuleNotFoundError
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "pandas":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, NoPandas())
"""
