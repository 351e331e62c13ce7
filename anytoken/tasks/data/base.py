"""``TaskDataModule``: what every task's DataModule shares: splits, their loaders and the vocabulary."""

from __future__ import annotations

from typing import Any, ClassVar

import lightning as L
from torch.utils.data import DataLoader, Dataset

from anytoken.tasks.data.sampling import split_loader
from anytoken.tokenizers.space import Vocab


class TaskDataModule(L.LightningDataModule):
    """Subclasses fill ``self.splits`` (split name -> dataset) and implement ``collate`` and ``vocabulary``.

    Training reads ``train`` (seeded shuffling, full batches), validation ``val``, testing every split
    of ``TEST_SPLITS`` present, in that order (``test_splits`` names them for the task's metrics), and
    predicting ``test``.

    Args:
        batch_size: training batch size; evaluation uses twice this.
        num_workers: DataLoader worker processes.
        seed: shuffling seed (the order is a function of seed and epoch, so resumed runs match).
    """

    TEST_SPLITS: ClassVar[tuple[str, ...]] = ("test", "heldout")

    def __init__(self, batch_size: int, num_workers: int = 0, seed: int = 0) -> None:
        super().__init__()
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.splits: dict[str, Dataset] = {}

    def collate(self, items: list[Any]) -> Any:
        """A list of dataset items -> one batch."""
        raise NotImplementedError

    def vocabulary(self) -> Vocab:
        """The TokenSpace and tokenizers the model is built with."""
        raise NotImplementedError

    @property
    def vocab(self) -> dict[str, Any]:
        """``vocabulary()`` in plain form: the CLI links it into the model's ``vocab``."""
        return self.vocabulary().to_dict()

    @property
    def test_splits(self) -> list[str]:
        """Names of the test dataloaders, in order."""
        return [s for s in self.TEST_SPLITS if s in self.splits]

    def loader(self, split: str, train: bool = False) -> DataLoader:
        """The DataLoader of ``split``."""
        if split not in self.splits:
            raise ValueError(f"{type(self).__name__} has no {split!r} split (it has {list(self.splits)})")
        return split_loader(self.splits[split], self.batch_size, self.collate, train, self.seed,
                            self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> list[DataLoader]:
        return [self.loader(s) for s in self.test_splits]

    def predict_dataloader(self) -> DataLoader:
        return self.loader("test")
