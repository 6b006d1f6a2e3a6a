"""No Dagster test may leave a DagsterInstance entered behind it.

Entering a ``DagsterInstance`` (``with instance:``, ``instance_for_test()``, and the instance a
``build_schedule_context(instance=...)`` opens from the instance's ref on ``context.instance``)
sets Dagster's current defs-state storage, a ContextVar holding the instance's storage, whose
link back to the instance is a weakref; leaving it resets the ContextVar to what it was before.
A context that is never closed is left by the garbage collector instead, at an arbitrary moment
— possibly in the middle of a later test — and then resets the ContextVar to the storage of an
instance that is long gone: the next ``dg.materialize`` (which loads definitions and asks that
storage for the latest defs state) fails with "Attempted to resolve undefined DagsterInstance
weakref". So: always ``with dg.build_*_context(...) as context``, and here, after every test,
collect garbage now and fail the test that leaked, instead of a random later one.
"""

import gc

import dagster as dg
import pytest
from dagster._core.storage.defs_state import base as defs_state


@pytest.fixture(autouse=True)
def no_dagster_instance_left_entered():
    yield
    gc.collect()  # finalize whatever the test left open now, not during a later test
    leaked = defs_state.DefsStateStorage.get()
    if leaked is not None:
        defs_state._current_storage.set(None)  # keep the next tests clean
        pytest.fail("this test left a DagsterInstance entered (a build_*_context not used as "
                    f"`with ... as context`?): current defs state storage {leaked!r}")


@pytest.fixture()
def instance():
    """A fresh, ephemeral Dagster instance, exited at the end of the test."""
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture()
def dagster_dev(devnet, tmp_path, request):
    """``dagster dev`` (webserver, daemon, the chain head sensor) on the session devnet, with a
    lake in ``tmp_path`` and the requesting module's ``SIZE`` blocks per partition."""
    from dagster_service import dagster_service

    from assets.demo import QUIET_DAGSTER_CLI

    env = {**QUIET_DAGSTER_CLI, "CHAINLAKE_RPC_URL": devnet.url,
           "CHAINLAKE_LAKE_URI": str(tmp_path / "lake"),
           "CHAINLAKE_PARTITION_SIZE": str(request.module.SIZE)}
    with dagster_service("dagster dev", tmp_path, env) as service:
        yield service
