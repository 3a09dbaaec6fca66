"""Model files: unpickling a user's model with one-line errors, and pickling it into the store.

Pickle stores functions and classes *by reference* (module and name), not by value.
Two things follow, and this module turns each into a message that says what to do:

- a function (or class) defined in the script that pickled it lives in ``__main__``;
  no other process has it (``Can't get attribute 'f' on <module '__main__'>``);
- one defined in the user's own module needs that module importable wherever the model
  is loaded: at registration, and again in every server worker.

What :func:`read_model` imports from outside the Python installation while unpickling
(the user's own top-level modules) is recorded by :func:`user_modules` with the
directory it came from, so that a server started without that directory on
``PYTHONPATH`` is refused with the directory named (``vigil serve`` loads the model
before starting the server, see :func:`models.artifacts.load`).

A model that plain pickle cannot write (a function pickled *by value* with cloudpickle,
whose ``__module__`` is still ``__main__``) is written with cloudpickle, which serves it
without any import path; joblib reads both formats.
"""

from __future__ import annotations

import pickle
import re
import sys
import sysconfig
from pathlib import Path
from typing import Any

import joblib

from .errors import RegistrationError

MAIN_HINT = ("{what} refers to {name!r}, defined in the script that pickled it (module __main__), which "
             "pickle stores by name only: move {name!r} into a module (e.g. mymodel.py), import it from there "
             "before pickling, and register with that module's directory on PYTHONPATH "
             "(PYTHONPATH=/dir/of/module vigil register ...); or pickle it by value with "
             "cloudpickle.dump(model, file)")


def _installed_roots() -> tuple[Path, ...]:
    """Directories of the Python installation (stdlib, site-packages): modules from there
    are not the user's."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, *sysconfig.get_paths().values()}
    return tuple(Path(p).resolve() for p in paths if p)


def user_modules(names: set[str]) -> dict[str, str]:
    """Of the newly imported top-level ``names``, those outside the Python installation,
    with the directory that must be on ``PYTHONPATH`` to import them again."""
    roots = _installed_roots()
    found = {}
    for name in sorted(names):
        module = sys.modules.get(name)
        file = getattr(module, "__file__", None)
        if not file:
            continue
        path = Path(file).resolve()
        if any(path.is_relative_to(r) for r in roots):
            continue
        found[name] = str(path.parent.parent if path.name == "__init__.py" else path.parent)
    return found


def read_model(path: str | Path, *, what: str | None = None,
               modules: dict[str, str] | None = None) -> tuple[Any, dict[str, str]]:
    """Unpickle a model file -> (model, the user's modules it imported: name -> directory).

    Raises :class:`RegistrationError` with one line saying why not and what to do.
    ``what`` names the model in messages (default: the path); ``modules`` are the
    directories recorded at registration, named when one of them cannot be imported.
    """
    what = what or str(path)
    before = {n.partition(".")[0] for n in sys.modules}
    try:
        model = joblib.load(path)
    except FileNotFoundError:
        raise RegistrationError(f"{what}: no such file") from None
    except ModuleNotFoundError as exc:
        raise RegistrationError(missing_module_message(what, exc.name or str(exc), modules or {})) from None
    except AttributeError as exc:
        name = _main_attribute(str(exc))
        if name is not None:
            raise RegistrationError(MAIN_HINT.format(what=what, name=name)) from None
        raise RegistrationError(f"{what}: cannot load model (AttributeError: {exc}); a class or function it "
                                "refers to is missing from its module (was the code changed since?)") from None
    except Exception as exc:  # unpickling arbitrary files raises anything; the user needs one line
        raise RegistrationError(f"{what}: cannot load model ({type(exc).__name__}: {exc})") from None
    return model, user_modules({n.partition(".")[0] for n in sys.modules} - before)


def _main_attribute(message: str) -> str | None:
    """The name in pickle's ``Can't get attribute 'f' on <module '__main__' ...>``: the
    module shown is this process's ``__main__`` (``vigil``, or ``service.cli`` under
    ``python -m``), where the pickle looked for the script's ``f``."""
    found = re.search(r"Can't get attribute '([^']+)' on <module '([^']+)'", message)
    if found is None:
        return None
    main = sys.modules.get("__main__")
    main_names = {"__main__", getattr(main, "__name__", None), getattr(getattr(main, "__spec__", None), "name", None)}
    return found.group(1) if found.group(2) in main_names else None


def missing_module_message(what: str, module: str, modules: dict[str, str]) -> str:
    where = modules.get(module.partition(".")[0])
    todo = (f" (it was imported from {where} at registration): start with PYTHONPATH={where}" if where else
            ": put the directory holding it on PYTHONPATH (PYTHONPATH=/dir/of/module vigil ...)")
    return (f"{what} needs the module {module!r}, which cannot be imported here{todo}, or register the model "
            "pickled by value with cloudpickle")


def dump_model(model: Any, path: str | Path) -> None:
    """Write ``model`` with joblib, or with cloudpickle when pickle cannot write it by
    reference (a function or class from ``__main__`` that cloudpickle had pickled by value)."""
    try:
        joblib.dump(model, path)
    except (pickle.PicklingError, AttributeError, TypeError):
        import cloudpickle

        with open(path, "wb") as fh:
            cloudpickle.dump(model, fh)
