"""How every benchmark writes its JSON result: folders created, written to a temporary file and
renamed (a reader never sees half a file, e.g. a soak still running), numpy scalars as floats."""
import json
import os


def write_json(result: dict, path) -> None:
    """Write ``result`` (a JSON-able dict) to ``path``."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(result, f, indent=1, default=float)
    os.replace(tmp, path)
