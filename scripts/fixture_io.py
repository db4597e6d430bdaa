"""Writing generated fixtures without leaving half-written files: shared by the make_* scripts.

Each file is written under a temporary name beside its destination and renamed into place, so
an interrupted run never leaves a file (or a package folder) that looks complete.
"""

import os
import shutil
import tempfile


def save_package(mlmodel, target):
    """Saves a coremltools model as the `.mlpackage` folder `target`, replacing an old one."""
    folder = os.path.dirname(os.path.abspath(target))
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        staged = os.path.join(tmp, os.path.basename(target))
        mlmodel.save(staged)
        if os.path.exists(target):
            shutil.rmtree(target)
        os.replace(staged, target)


def save_tensors(tensors, path):
    """Saves a dict of torch tensors or numpy arrays as safetensors at `path`."""
    first = next(iter(tensors.values()))
    if hasattr(first, "contiguous"):
        from safetensors.torch import save_file

        tensors = {k: v.contiguous() for k, v in tensors.items()}
    else:
        from safetensors.numpy import save_file
    save_file(tensors, path + ".tmp")
    os.replace(path + ".tmp", path)
