"""Test scaffolding, put on the PYTHONPATH of the workers a test starts: the first worker
process to finish a trial finds its device failed, as after a sticky CUDA error (``empty_cache``
raises). A marker file makes it happen once across all the processes."""

import os

MARKER = os.environ.get("ABLATE_TEST_DEVICE_FAILS_ONCE")

if MARKER:
    import ablate.run.attempt

    def release(device: object) -> None:
        try:
            descriptor = os.open(MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(descriptor)
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    ablate.run.attempt.release_device_memory = release
