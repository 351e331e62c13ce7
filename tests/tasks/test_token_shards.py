"""Token shards (``anytoken tokenize``): training from them equals on-the-fly training, stale shards are
refused, a killed run resumes keeping finished shards, and a mixture writes and reads one set per task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from configs_shrink import shrink_config
from loss_curves import same, train_losses

from anytoken.cli import main
from anytoken.heads import DecodingConfig
from anytoken.tasks.data.mixture import MixtureDataModule
from anytoken.tasks.data.shard_writer import ShardJobs, tokenize_config, write_shards
from anytoken.tasks.data.shards import INDEX_FILE, TokenShards, merge_records
from anytoken.tasks.data.text_to_image import TextToImageDataModule
from anytoken.tasks.text_to_image import TextToImageModule
from anytoken.tokenizers.image_vq import ImageVQTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")
TINY_VQ = dict(image_size=32, downsample=8, channels=8, encoder_channels=8, channel_mult=[1, 1, 1],
               codebook_size=16, latent_dim=4)
SIZES = dict(num_train=20, num_val=4, num_test=0, num_heldout=0, bpe_vocab_size=280, batch_size=4)


def save_vq(path: Path, seed: int) -> str:
    torch.manual_seed(seed)
    ImageVQTokenizer(**TINY_VQ).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def vq(tmp_path_factory: pytest.TempPathFactory) -> str:
    return save_vq(tmp_path_factory.mktemp("vq") / "vq", 0)


def test_text_to_image_from_shards_trains_as_on_the_fly(vq: str, tmp_path: Path) -> None:
    fly = TextToImageDataModule(vq, **SIZES)
    index = write_shards(fly, tmp_path / "shards", shard_size=8, progress=False)
    assert index["num_samples"] == 20 and [len(s["members"]) for s in index["shards"]] == [8, 8, 4]
    sharded = TextToImageDataModule(vq, **SIZES, shards=str(tmp_path / "shards"))
    first, stored = next(iter(fly.train_dataloader())), next(iter(sharded.train_dataloader()))
    assert "images" not in stored and stored["image_tokens"].shape == (4, 16)  # 4 x 4 grid, no pixels
    assert stored["image_ids"] == first["image_ids"] and stored["captions"] == first["captions"]
    with torch.no_grad():
        assert torch.equal(stored["image_tokens"], fly.image_tokenizer.encode(first["images"]).flatten(1))
    decoding = DecodingConfig(max_new_tokens=17)
    expected = train_losses(fly, TextToImageModule, decoding=decoding)
    torch.testing.assert_close(train_losses(sharded, TextToImageModule, decoding=decoding), expected)


def test_stale_or_unfinished_shards_are_refused(vq: str, tmp_path: Path) -> None:
    write_shards(TextToImageDataModule(vq, **SIZES), tmp_path / "shards", shard_size=8, progress=False)
    other = save_vq(tmp_path / "other_vq", seed=1)  # same config, other weights
    stale = TextToImageDataModule(other, **SIZES, shards=str(tmp_path / "shards"))
    with pytest.raises(ValueError, match=r"^stale token shards at .*: written by tokenizers \w+, this run"):
        stale.train_dataloader()
    (tmp_path / "shards" / INDEX_FILE).unlink()
    with pytest.raises(ValueError, match="no finished token shards"):
        TextToImageDataModule(vq, **SIZES, shards=str(tmp_path / "shards")).train_dataloader()
    with pytest.raises(ValueError, match="reads token shards already"):
        write_shards(stale, tmp_path / "again")


def test_killed_tokenize_resumes_keeping_finished_shards(vq: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    data, out = TextToImageDataModule(vq, **SIZES), tmp_path / "shards"
    reference = write_shards(data, tmp_path / "reference", shard_size=4, progress=False)
    record = type(data).shard_record

    def dies_at_sample_13(self: Any, index: int) -> dict[str, Any]:
        if index == 13:
            raise KeyboardInterrupt  # the run is stopped while writing shard 3
        return record(self, index)

    monkeypatch.setattr(type(data), "shard_record", dies_at_sample_13)
    with pytest.raises(KeyboardInterrupt):
        write_shards(data, out, shard_size=4, progress=False)
    monkeypatch.undo()
    finished = sorted(out.glob("*.tar"))
    assert len(finished) == 3 and not (out / INDEX_FILE).exists()  # shard 3 never appeared, nor the index
    (out / f".{finished[0].name[:10]}-000004.tar.x.tmp.tar").write_bytes(b"half")  # a SIGKILLed writer's
    stamps = {p.name: p.stat().st_mtime_ns for p in finished}
    written: list[int] = []
    write = ShardJobs.__getitem__
    monkeypatch.setattr(ShardJobs, "__getitem__", lambda self, i: written.append(i) or write(self, i))
    index = write_shards(data, out, shard_size=4, progress=False)
    assert written == [3, 4] and {p.name: p.stat().st_mtime_ns for p in finished} == stamps
    files = [s["file"] for s in index["shards"]]
    assert sorted(p.name for p in out.iterdir()) == sorted([*files, INDEX_FILE])  # the temporary file is gone
    a, b = TokenShards(out, index["digest"]), TokenShards(tmp_path / "reference", reference["digest"])
    assert len(a) == len(b) == 20 and all(same(a[i], b[i]) for i in range(20))


def test_parallel_writers_write_the_same_shards(vq: str, tmp_path: Path) -> None:
    data = TextToImageDataModule(vq, **SIZES)
    one = write_shards(data, tmp_path / "one", shard_size=6, progress=False)
    two = write_shards(data, tmp_path / "two", workers=2, shard_size=6, progress=False)
    assert one == two
    for name in [shard["file"] for shard in one["shards"]]:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_merge_records_offsets_index_keys_and_checks_scalars() -> None:
    records = [{"images": torch.zeros(n, 1), "image_index": torch.zeros(2 * n, dtype=torch.long), "k": 3,
                "ids": [n]} for n in (1, 2)]
    batch = merge_records(records, {"image_index": "images"})
    assert batch["image_index"].tolist() == [0, 0, 1, 1, 1, 1] and batch["k"] == 3 and batch["ids"] == [1, 2]
    with pytest.raises(ValueError, match="disagree on 'k'"):
        merge_records([{"k": 1}, {"k": 2}])


MIXTURE = {
    "class_path": "anytoken.tasks.data.mixture.MixtureDataModule",
    "init_args": {"tasks_per_step": 2, "steps_per_epoch": 3, "seed": 0, "tasks": {
        "forecast": {"datamodule": "anytoken.tasks.data.forecasting.ForecastDataModule",
                     "data_args": {"num_train": 12, "num_val": 4, "num_test": 0, "num_heldout": 0,
                                   "history": 4, "horizon": 4, "batch_size": 4},
                     "format": {"kind": "forecast"}},
        "table": {"datamodule": "anytoken.tasks.data.tables.TableDataModule",
                  "data_args": {"source": "iris", "n_bins": 4, "batch_size": 4},
                  "format": {"kind": "table_prediction", "target": "target"}},
    }},
}


def test_mixture_tokenizes_and_trains_one_shard_set_per_task(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "mixture.yaml"
    config.write_text(yaml.safe_dump({"data": MIXTURE}))
    main(["tokenize", "--config", str(config), "--out", str(tmp_path / "shards"), "--shard-size", "32"])
    assert "forecast: 12 samples in 1 shards" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == ["forecast", "table"]
    fly = MixtureDataModule(**MIXTURE["init_args"])
    sharded = MixtureDataModule(**MIXTURE["init_args"], shards=str(tmp_path / "shards"))
    assert same(next(iter(fly.train_dataloader())), next(iter(sharded.train_dataloader())))
    again = tokenize_config(config, tmp_path / "shards", progress=False)  # finished: nothing rewritten
    assert [i["num_samples"] for i in again.values()] == [12, len(fly.datamodules["table"].splits["train"])]
    with pytest.raises(SystemExit, match="^anytoken tokenize: .*no data section"):
        config.write_text("trainer: {}\n")
        main(["tokenize", "--config", str(config)])


@pytest.mark.parametrize("name", ["text_to_image_scenes", "speech_stt", "anything_tiny"])
def test_shipped_configs_tokenize_and_train_from_their_shards(name: str, repo_root: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    config = str(shrink_config(repo_root / "configs" / f"{name}.yaml", tmp_path))
    main(["tokenize", "--config", config, "--out", str(tmp_path / "shards")])
    assert "samples in" in capsys.readouterr().out
    main(["fit", "--config", config, "--data.init_args.shards", str(tmp_path / "shards")])


def test_shards_of_another_vocabulary_setting_are_stale(tmp_path: Path) -> None:
    """Same tokenizers, another setting the tokens depend on (forecast_start, kept in the vocabulary)."""
    from anytoken.tasks.data.forecasting import ForecastDataModule

    small = dict(num_train=8, num_val=0, num_test=0, num_heldout=0, history=3, horizon=3, num_bins=9)
    write_shards(ForecastDataModule(**small, future_start="window"), tmp_path / "shards", progress=False)
    observed = ForecastDataModule(**small, future_start="observed", shards=str(tmp_path / "shards"))
    with pytest.raises(ValueError, match=r"^stale token shards at "):
        observed.train_dataloader()
