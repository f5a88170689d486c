"""The one base class of failures a user can fix from the message alone (bad input, a bad setting, a missing file,
an unreachable server): `distill`'s entry point prints them as one line. Anything else is a bug and keeps its
traceback."""


class UserError(Exception):
    def __str__(self) -> str:
        # KeyError subclasses would otherwise print their message quoted
        return str(self.args[0]) if self.args else ""


def problems(exc) -> str:
    """A settings model's validation errors (pydantic's ValidationError) on one line: `field.path: what is wrong;
    ...`."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
