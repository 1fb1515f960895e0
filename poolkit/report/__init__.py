"""`poolkit report`: one self-contained HTML page built from the JSON results the other commands wrote.

A command package like verify or bench, but it never imports them: it reads their files (the
schema knowledge is in `schema.py` alone), so a report can be built on a machine without torch and
from results written by another poolkit version. Fields it does not find are not shown.
"""
