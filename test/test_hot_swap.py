"""EngineSwapper: background build while the old engine serves, swap between frames, coalescing,
failure keeps the old engine (pure Python; engines are stand-in objects, nothing ROS)."""

from __future__ import annotations

import threading

from mtl_perception.deploy.hot_swap import EngineSettings, EngineSwapper


class Builder:
    """Builds a labelled stand-in engine; ``gate`` holds a build until the test releases it."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()  # set when a build has started (the thread took its settings)
        self.built: list[EngineSettings] = []
        self.fail_on: set[str] = set()

    def __call__(self, s: EngineSettings) -> dict:
        self.entered.set()
        self.gate.wait(10)
        if s.decoder in self.fail_on:
            raise FileNotFoundError(f"no shipped {s.decoder} model")
        self.built.append(s)
        return {"decoder": s.decoder}


def test_old_engine_serves_until_the_new_one_is_taken():
    build = Builder()
    sw = EngineSwapper(build)
    sw.build_now(EngineSettings(decoder="mlore"))
    build.gate.clear()
    assert sw.request(EngineSettings(decoder="moe"))
    assert sw.building and sw.target.decoder == "moe"
    assert sw.take_ready() is None and sw.engine["decoder"] == "mlore"  # still building: old one serves
    build.gate.set()
    assert sw.wait_idle(10)
    engine, report = sw.take_ready()
    assert engine["decoder"] == "moe" and sw.engine is engine and sw.settings.decoder == "moe"
    assert report.old.decoder == "mlore" and report.new.decoder == "moe"
    assert 0 <= report.built_s <= report.switch_s
    assert sw.take_ready() is None and sw.switches == 1


def test_same_settings_are_not_rebuilt():
    build = Builder()
    sw = EngineSwapper(build)
    sw.build_now(EngineSettings(decoder="mlore", precision="fp32"))
    assert not sw.request(EngineSettings(decoder="mlore", precision="fp32"))
    assert len(build.built) == 1


def test_requests_while_building_are_coalesced_to_the_latest():
    build = Builder()
    sw = EngineSwapper(build)
    sw.build_now(EngineSettings(decoder="mlore"))
    build.gate.clear()
    build.entered.clear()
    sw.request(EngineSettings(decoder="moe"))
    # wait until the builder thread has taken moe: otherwise which request it takes first is a race
    assert build.entered.wait(10)
    sw.request(EngineSettings(decoder="meco"))
    sw.request(EngineSettings(decoder="baseline"))
    assert sw.target.decoder == "baseline"
    build.gate.set()
    assert sw.wait_idle(10)
    engine, _ = sw.take_ready()
    assert engine["decoder"] == "baseline"
    # moe was in flight when the others came; meco was superseded before it started
    assert [s.decoder for s in build.built] == ["mlore", "moe", "baseline"]


def test_failed_build_keeps_the_old_engine_and_reports():
    build = Builder()
    build.fail_on = {"taskexpert"}
    failures, requests_in_callback = [], []

    def on_failure(s, e):  # what the node does: set the serving values back, which must not rebuild
        failures.append((s.decoder, str(e)))
        requests_in_callback.append(sw.request(EngineSettings(decoder="mlore")))

    sw = EngineSwapper(build, on_failure=on_failure)
    sw.build_now(EngineSettings(decoder="mlore"))
    assert sw.request(EngineSettings(decoder="taskexpert"))
    assert sw.wait_idle(10)
    assert sw.take_ready() is None and sw.engine["decoder"] == "mlore"
    assert failures == [("taskexpert", "no shipped taskexpert model")] and requests_in_callback == [False]
    assert sw.failures == 1 and "FileNotFoundError" in sw.last_error
    assert sw.target.decoder == "mlore"  # nothing pending: asking for mlore again is a no-op
    assert not sw.request(EngineSettings(decoder="mlore"))


def test_close_discards_pending_work():
    build = Builder()
    sw = EngineSwapper(build)
    sw.build_now(EngineSettings(decoder="mlore"))
    build.gate.clear()
    sw.request(EngineSettings(decoder="moe"))
    sw.close()
    build.gate.set()
    assert sw.wait_idle(10)
    assert sw.take_ready() is None and sw.engine["decoder"] == "mlore"
    assert not sw.request(EngineSettings(decoder="meco"))


def test_settings_changes():
    a, b = EngineSettings(decoder="mlore"), EngineSettings(decoder="moe", precision="int8")
    assert a.changes(b) == {"decoder": ("mlore", "moe"), "precision": ("fp32", "int8")}
