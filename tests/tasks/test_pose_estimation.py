"""Pose estimation: stick figures, the COCO keypoints format, PCK/OKS AP, the task module and its config."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from training import train_steps

import anytoken
from anytoken.backbone import TransformerConfig
from anytoken.cli import main
from anytoken.heads.fourier import FourierHead
from anytoken.tasks.data.formats.coco_keypoints import (
    CocoKeypoints,
    CocoKeypointsDataset,
    read_coco_keypoints,
    write_coco_keypoints,
    write_keypoint_results,
)
from anytoken.tasks.data.pose import PoseDataModule, square_frame
from anytoken.tasks.data.synthetic.stick_figures import StickFiguresConfig, StickFiguresDataset
from anytoken.tasks.metrics.pose import COCO_SIGMAS, oks_ap, pck
from anytoken.tasks.pose_estimation import PoseEstimationModule, PoseEvaluation
from anytoken.tokenizers.image_encoder import ImageEncoderConfig
from anytoken.tokenizers.pose import COCO_KEYPOINTS, COCO_SKELETON


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny ops run fastest on one thread (several threads thrash on a shared CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_stick_figures_are_deterministic_and_exact() -> None:
    config = StickFiguresConfig(image_size=48, occlusion=0.5)
    ds = StickFiguresDataset("train", 30, config)
    a, b = ds[3], StickFiguresDataset("train", 30, config)[3]
    assert np.array_equal(a["keypoints"], b["keypoints"]) and a["image"].tobytes() == b["image"].tobytes()
    assert not np.array_equal(a["keypoints"], StickFiguresDataset("test", 30, config)[3]["keypoints"])
    hidden = 0
    for item in ds:
        kp, (x, y, w, h) = item["keypoints"], item["bbox"]
        assert kp.shape == (17, 3) and item["image"].size == (48, 48)
        assert (kp[:, :2] >= 0).all() and (kp[:, :2] <= 48).all()
        assert (
            (kp[:, 0] >= x).all()
            and (kp[:, 0] <= x + w).all()
            and (kp[:, 1] >= y).all()
            and (kp[:, 1] <= y + h).all()
        )
        assert set(kp[:, 2].tolist()) <= {1.0, 2.0}
        hidden += int((kp[:, 2] == 1).sum())
        # the person's left is on the image right (the figure faces the viewer) at the shoulders and hips
        assert kp[5, 0] > kp[6, 0] - 1e-9 or abs(kp[5, 1] - kp[6, 1]) > abs(kp[5, 0] - kp[6, 0])
    assert hidden > 0  # occluders hide some keypoints (v = 1)
    with pytest.raises(ValueError, match="split"):
        StickFiguresDataset("heldout", 3)
    with pytest.raises(ValueError, match="occlusion"):
        StickFiguresConfig(occlusion=2.0)


def _coco_fixture(tmp_path, n: int = 4):
    """Stick figures written in exactly the COCO keypoints format (JSON + PNG files)."""
    ds = StickFiguresDataset("val", n, StickFiguresConfig(image_size=40))
    (tmp_path / "images").mkdir()
    images, annotations = {}, []
    for i, item in enumerate(ds):
        item["image"].save(tmp_path / "images" / f"{i:03d}.png")
        images[i + 1] = {"id": i + 1, "file_name": f"{i:03d}.png", "width": 40, "height": 40}
        annotations.append(
            {
                "id": 10 + i,
                "image_id": i + 1,
                "keypoints": item["keypoints"],
                "bbox": list(item["bbox"]),
                "area": item["area"],
            }
        )
    write_coco_keypoints(
        tmp_path / "kp.json", CocoKeypoints(images, annotations, COCO_KEYPOINTS, COCO_SKELETON)
    )
    return ds, tmp_path / "kp.json", tmp_path / "images"


def test_coco_keypoints_round_trip(tmp_path) -> None:
    ds, path, images = _coco_fixture(tmp_path)
    raw = json.loads(path.read_text())
    assert raw["categories"][0]["skeleton"][0] == [16, 14]  # COCO's 1-based skeleton
    assert len(raw["annotations"][0]["keypoints"]) == 51 and raw["annotations"][0]["num_keypoints"] == 17
    data = read_coco_keypoints(path)
    assert data.keypoint_names == COCO_KEYPOINTS and data.skeleton == COCO_SKELETON
    coco = CocoKeypointsDataset(path, images)
    assert len(coco) == len(ds)
    for i in range(len(ds)):
        assert np.array_equal(coco[i]["keypoints"], ds[i]["keypoints"])
        assert np.array_equal(np.asarray(coco[i]["image"]), np.asarray(ds[i]["image"]))
    write_keypoint_results(
        tmp_path / "res.json", [{"image_id": 1, "keypoints": ds[0]["keypoints"], "score": 0.5}]
    )
    (res,) = json.loads((tmp_path / "res.json").read_text())
    assert res["category_id"] == 1 and len(res["keypoints"]) == 51


def test_reads_a_literal_coco_file(tmp_path) -> None:
    """A file as COCO ships it (1-based skeleton, flat keypoints, extra fields), written by hand."""
    kp = [float(v) for i in range(17) for v in (10 + i, 20 + i, 2 if i % 3 else 0)]
    text = json.dumps(
        {
            "info": {"year": 2017},
            "licenses": [],
            "images": [{"id": 7, "file_name": "a.jpg", "width": 64, "height": 48, "license": 1}],
            "annotations": [
                {
                    "id": 3,
                    "image_id": 7,
                    "category_id": 1,
                    "keypoints": kp,
                    "num_keypoints": 11,
                    "bbox": [5.0, 15.0, 30.0, 25.0],
                    "area": 512.5,
                    "iscrowd": 0,
                    "segmentation": [],
                }
            ],
            "categories": [
                {
                    "id": 1,
                    "name": "person",
                    "supercategory": "person",
                    "keypoints": list(COCO_KEYPOINTS),
                    "skeleton": [[16, 14], [14, 12]],
                }
            ],
        }
    )
    (tmp_path / "person_keypoints.json").write_text(text)
    data = read_coco_keypoints(tmp_path / "person_keypoints.json")
    (ann,) = data.annotations
    assert data.skeleton == ((15, 13), (13, 11)) and ann["area"] == 512.5 and ann["num_keypoints"] == 11
    assert ann["keypoints"].shape == (17, 3) and ann["keypoints"][1].tolist() == [11.0, 21.0, 2.0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["annotations"][0].update(keypoints=[0.0] * 50), "50 keypoint values"),
        (lambda d: d["annotations"][0]["keypoints"].__setitem__(0, math.nan), "NaN"),
        (lambda d: d["annotations"][0]["keypoints"].__setitem__(2, 5), "visibility"),
        (lambda d: d["annotations"][0].pop("bbox"), "lacks"),
        (lambda d: d["annotations"][0].update(image_id=999), "unknown image"),
        (lambda d: d["categories"][0].pop("keypoints"), "keypoint names"),
        (lambda d: d.pop("images"), "lacks"),
    ],
)
def test_coco_keypoints_bad_input(tmp_path, change, message) -> None:
    _, path, _ = _coco_fixture(tmp_path, n=1)
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        read_coco_keypoints(path)


def test_pck_and_oks_ap() -> None:
    gt = torch.zeros(2, 17, 3)
    gt[..., :2] = torch.rand(2, 17, 2) * 100
    gt[..., 2] = 2
    boxes = torch.tensor([[0.0, 0.0, 100.0, 50.0], [0.0, 0.0, 100.0, 100.0]])
    areas = torch.tensor([5000.0, 10000.0])
    assert pck(gt, gt, boxes) == 1.0
    assert oks_ap(gt, gt, boxes, areas) == {"ap": 1.0, "ap50": 1.0, "ap75": 1.0}
    shifted = gt.clone()
    shifted[..., 0] += 9.0  # within 0.1 * 100 = 10 px
    assert pck(shifted, gt, boxes) == 1.0 and pck(shifted, gt, boxes, threshold=0.05) == 0.0
    # OKS = mean_i exp(-d^2 / (2 s^2 (2 sigma_i)^2)); pick d per keypoint so that every OKS is 0.77
    oks = 0.77
    d = torch.tensor(
        [math.sqrt(-math.log(oks) * 2 * float(a) * (2 * s) ** 2) for a in areas for s in COCO_SIGMAS]
    )
    moved = gt.clone()
    moved[..., 0] += d.view(2, 17)
    result = oks_ap(moved, gt, boxes, areas)
    assert result["ap50"] == pytest.approx(1.0) and result["ap75"] == pytest.approx(1.0)
    assert result["ap"] == pytest.approx(0.6)  # matched at thresholds 0.50 .. 0.75: 6 of 10
    with pytest.raises(ValueError, match="sigmas"):
        oks_ap(gt, gt, boxes, areas, sigmas=[0.1] * 3)
    with pytest.raises(ValueError, match="boxes"):
        pck(gt, gt, boxes[:1])


@pytest.fixture(scope="module")
def pose_data() -> PoseDataModule:
    return PoseDataModule(
        num_train=32,
        num_val=8,
        num_test=8,
        num_bins=32,
        batch_size=8,
        figures=StickFiguresConfig(image_size=32),
        image_size=32,
    )


def _model(data: PoseDataModule, **kwargs) -> PoseEstimationModule:
    return PoseEstimationModule(
        data.vocab,
        backbone=TransformerConfig.from_name("tiny", max_seq_len=128),
        image_encoder=ImageEncoderConfig(source="cnn", image_size=32, cnn_width=16, cnn_grid=4),
        **kwargs,
    )


def test_batches_and_frames(pose_data, tmp_path) -> None:
    batch = pose_data.collate([pose_data.splits["train"][i] for i in range(4)])
    assert batch["images"].shape == (4, 3, 32, 32) and batch["pose_ids"].shape == (4, 51)
    assert torch.allclose(batch["frames"], torch.tensor([[0.0, 0.0, 32.0, 32.0]], dtype=torch.float64))
    decoded = pose_data.tokenizer.decode(batch["pose_ids"], batch["frames"])
    assert (decoded[..., :2] - batch["keypoints"][..., :2]).abs().max() <= 32 / 64 + 1e-4  # half a bin
    assert square_frame((10.0, 20.0, 30.0, 10.0), 0.0) == (10.0, 10.0, 30.0, 30.0)
    _, path, images = _coco_fixture(tmp_path)
    boxed = PoseDataModule(
        source="coco",
        coco_train=(str(path), str(images)),
        coco_val=(str(path), str(images)),
        frame="box",
        box_margin=0.2,
        image_size=32,
        num_bins=16,
    )
    batch = boxed.collate([boxed.splits["train"][i] for i in range(2)])
    assert batch["images"].shape == (2, 3, 32, 32)
    decoded = boxed.tokenizer.decode(batch["pose_ids"], batch["frames"])
    assert (
        (decoded[..., :2] - batch["keypoints"][..., :2]).abs().max(-1).values <= batch["frames"][:, 2:3] / 32
    ).all()


@pytest.mark.parametrize("head", ["lm", "fourier"])
def test_module_generates_exactly_one_pair_per_keypoint(pose_data, head, tmp_path) -> None:
    task = _model(pose_data, head=head, fourier_gamma=1e-3)
    model = task.model.eval()
    assert isinstance(model.lm_head, FourierHead) == (head == "fourier")
    batch = next(iter(pose_data.loader("val")))
    pred = model.predict_pose(batch["images"], batch["frames"])
    assert pred.shape == (8, 17, 3) and set(pred[..., 2].unique().tolist()) <= {0.0, 1.0, 2.0}
    assert float(task.loss(batch)) > 0
    evaluation = task.evaluations["pose_estimation"]
    assert isinstance(evaluation, PoseEvaluation)
    metrics = evaluation.report(evaluation.step(model, batch))
    assert {"pck@0.1", "ap", "ap50", "ap75", "visibility_acc"} == set(metrics)
    results = evaluation.predict(model, batch)
    assert [r["image_id"] for r in results] == batch["image_ids"]
    assert results[0]["keypoints"] == pred[0].flatten().tolist()
    task.export(tmp_path / "release")
    loaded = anytoken.load(tmp_path / "release")
    assert isinstance(loaded.lm_head, FourierHead) == (head == "fourier")
    assert torch.equal(loaded.predict_pose(batch["images"], batch["frames"]), pred)


def test_module_learns_a_batch(pose_data) -> None:
    model = _model(pose_data)
    batch = next(iter(pose_data.train_dataloader()))
    first, last = train_steps(model, batch, 25)
    assert last < 0.6 * first


def test_bad_module_setup(pose_data) -> None:
    with pytest.raises(ValueError, match="image_encoder"):
        PoseEstimationModule(pose_data.vocab, backbone=TransformerConfig.from_name("tiny"))
    with pytest.raises(ValueError, match="head"):
        _model(pose_data, head="softmax")
    with pytest.raises(ValueError, match="oks_sigmas"):
        _model(pose_data, oks_sigmas=[0.1])


def test_config_fits_and_tests_through_the_cli(tmp_path) -> None:
    args = [
        "--config",
        "configs/pose_stick_figures.yaml",
        "--trainer.max_steps",
        "2",
        "--trainer.val_check_interval",
        "2",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.limit_test_batches",
        "1",
        "--trainer.accelerator",
        "cpu",
        "--trainer.default_root_dir",
        str(tmp_path),
        "--trainer.logger.init_args.save_dir",
        str(tmp_path),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.callbacks",
        "[]",
        "--model.init_args.backbone.n_layer",
        "1",
        "--model.init_args.backbone.d_model",
        "32",
        "--model.init_args.image_encoder.cnn_width",
        "16",
        "--model.init_args.head",
        "fourier",
        "--data.init_args.num_train",
        "16",
        "--data.init_args.num_val",
        "4",
        "--data.init_args.num_test",
        "4",
        "--data.init_args.batch_size",
        "4",
        "--data.init_args.num_workers",
        "0",
    ]
    main(["fit", *args])
    main(["test", *args])
    metrics = "".join(p.read_text() for p in tmp_path.glob("**/metrics.csv"))  # fit and test log apart
    for name in ("test/pck@0.1", "test/ap", "val/ap50", "test/visibility_acc"):
        assert name in metrics
