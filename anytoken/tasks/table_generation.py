"""Table rows as a task: the shared ``TableTaskModule`` and synthetic row generation.

A sample is ``<bos> <task> [<table> given columns </table>] <table> generated columns </table>``: the
given (tag, value) pairs form a prompt segment, the rest is the target segment. Attention stays causal
everywhere (the prompt is no bidirectional prefix), so training sees what KV-cache decoding sees.
Generation continues the prompt with one segment that ``TableTokenizer.grammar(columns)`` constrains
(each column's tag, then a value from its block, in schema order), so the shared decoding code in
``heads/decoding.py`` enforces well-formed rows. Batches are ``{"rows": DataFrame}`` from
``TableDataModule``; a ``"given"`` list in a batch fixes which columns the prompt holds.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from lightning.pytorch.utilities import rank_zero_info

from anytoken.heads import DecodingConfig
from anytoken.tasks.module import TokenTaskModule
from anytoken.tokenizers.sequence import Segment, Special, Tokens
from anytoken.tokenizers.table import TableTokenizer
from anytoken.tokenizers.table_schema import is_number_column


class TableTaskModule(TokenTaskModule):
    """What the table tasks share: the tokenizer, prompts of given columns, constrained row generation.

    Args:
        column_order: ``"fixed"`` (schema order) or ``"shuffle"`` (a random order per training row, an
            augmentation; evaluation and generation use the schema order the grammar fixes).
        num_examples: rows printed after testing.
        All other arguments are those of ``TokenTaskModule`` (no image encoder).
    """

    task_tag: str  # the ``<task>`` special that opens every sample

    def __init__(
        self,
        *args: Any,
        column_order: Literal["fixed", "shuffle"] = "fixed",
        num_examples: int = 5,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if self.image_encoder is not None:
            raise ValueError(f"{type(self).__name__} takes no image_encoder")
        if not isinstance(self.tokenizers.get("table"), TableTokenizer):
            raise ValueError(f"{type(self).__name__} needs a TableTokenizer in vocab under 'table'")
        if self.task_tag not in self.space.tasks:
            raise ValueError(f"the TokenSpace has no <{self.task_tag}> tag (tasks: {list(self.space.tasks)})")
        if column_order not in ("fixed", "shuffle"):
            raise ValueError(f"column_order must be 'fixed' or 'shuffle', got {column_order!r}")
        self.table: TableTokenizer = self.tokenizers["table"]
        self.column_order, self.num_examples = column_order, num_examples
        self._outputs: dict[str, list[Any]] = {}

    def columns_for(self, batch: dict[str, Any]) -> tuple[list[str], list[str]]:
        """``(given, generated)`` column names of a batch; tasks decide when the batch does not say."""
        raise NotImplementedError

    def num_samples(self, batch: dict[str, Any]) -> int:
        return len(batch["rows"])

    def samples(self, batch: dict[str, Any], targets: bool) -> list[list[Segment]]:
        """Segments per row; without targets the prompt ends in an open table segment (holding the first
        generated column's tag when ``batch["open_tag"]``, for scoring that column's values)."""
        rows, (given, generated) = batch["rows"], self.columns_for(batch)
        order = self.column_order if self.training else "fixed"
        rng = np.random.default_rng(int(torch.randint(2**31 - 1, ()))) if order == "shuffle" else None
        prompt = self.table.encode(rows, columns=given, order=order, rng=rng) if given else None
        if targets:
            target = self.table.encode(rows, columns=generated, order=order, rng=rng)  # (B, L)
        else:
            opened = [self.table.tag_id(generated[0])] if batch.get("open_tag") else []
            open_ids = torch.tensor(opened, dtype=torch.long)
        out = []
        for i in range(len(rows)):
            segments: list[Segment] = [Special("<bos>"), Special(f"<{self.task_tag}>")]
            if prompt is not None:
                segments.append(Tokens("table", prompt[i]))
            if targets:
                segments.append(Tokens("table", target[i], target=True))
            else:
                segments.append(Tokens("table", open_ids, close=False))
            out.append(segments)
        return out

    @torch.no_grad()
    def generate_columns(
        self, rows: pd.DataFrame, given: list[str], decoding: DecodingConfig | None = None, chunk: int = 256
    ) -> pd.DataFrame:
        """Complete each row of ``rows`` from its ``given`` columns: a frame of the other columns.

        Args:
            rows: ``N`` rows holding at least the ``given`` columns (``N`` empty rows when none is given).
            given: the columns to condition on; the rest of the schema is generated in schema order.
            decoding: how to pick tokens (default: the model's); ``max_new_tokens`` is set to fit a row.
            chunk: rows generated at once.
        """
        generated = [c for c in self.table.columns if c not in given]
        if not generated:
            raise ValueError("every column is given: nothing to generate")
        grammar = self.table.grammar(generated)
        decoding = replace(decoding or self.decoding, max_new_tokens=grammar.max_length + 1)
        parts = []
        for start in range(0, len(rows), chunk):
            batch = {"rows": rows.iloc[start:start + chunk], "given": given}
            ids = self.generate_segment(batch, "table", decoding, grammar)
            parts.append(self.table.decode(torch.stack(ids)))
        if not parts:
            return self.table.decode(torch.zeros(0, grammar.max_length, dtype=torch.long))[generated]
        return pd.concat(parts, ignore_index=True)

    def _collect(self, stage: str, item: Any) -> None:
        self._outputs.setdefault(stage, []).append(item)

    def on_validation_epoch_start(self) -> None:
        self._outputs = {}

    def on_test_epoch_start(self) -> None:
        self._outputs = {}


class TableGenerationModule(TableTaskModule):
    """Generate synthetic rows, unconditionally or conditioned on some columns.

    Args:
        condition_prob: share of training batches whose prompt holds a random non-empty proper subset of
            the columns (the rest are generated); the others generate whole rows.
        condition_on: columns given at validation, test and predict time (None: unconditional rows).
        num_synthetic: unconditional rows sampled to compare with the evaluated rows (at least as many);
            more rows make the distance less noisy.
        All other arguments are those of ``TableTaskModule``. Use ``decoding.strategy: sample``: greedy
        decoding gives the same row every time.
    """

    task_tag = "table_generate"

    def __init__(
        self,
        *args: Any,
        condition_prob: float = 0.5,
        condition_on: list[str] | None = None,
        num_synthetic: int = 512,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if not 0.0 <= condition_prob <= 1.0:
            raise ValueError(f"condition_prob must lie in [0, 1], got {condition_prob}")
        condition_on = list(condition_on or [])
        unknown = sorted(set(condition_on) - set(self.table.columns))
        if unknown or len(condition_on) >= len(self.table.columns):
            raise ValueError(f"condition_on must be a proper subset of the columns {self.table.columns}, "
                             f"got {condition_on}")
        if num_synthetic < 1:
            raise ValueError(f"num_synthetic must be >= 1, got {num_synthetic}")
        self.condition_prob, self.condition_on = condition_prob, condition_on
        self.num_synthetic = num_synthetic

    def columns_for(self, batch: dict[str, Any]) -> tuple[list[str], list[str]]:
        columns = self.table.columns
        if "given" in batch:
            given = list(batch["given"])
        elif self.training and len(columns) > 1 and float(torch.rand(())) < self.condition_prob:
            k = int(torch.randint(1, len(columns), ()))
            given = [columns[i] for i in sorted(torch.randperm(len(columns))[:k].tolist())]
        else:
            given = self.condition_on
        return given, [c for c in columns if c not in given]

    def sample_rows(
        self,
        num_rows: int | None = None,
        given: pd.DataFrame | None = None,
        decoding: DecodingConfig | None = None,
    ) -> pd.DataFrame:
        """``num_rows`` synthetic rows, or one per row of ``given`` completing its columns (schema order)."""
        if given is None:
            if num_rows is None or num_rows < 0:
                raise ValueError("sample_rows needs num_rows >= 0 or a frame of given columns")
            return self.generate_columns(pd.DataFrame(index=range(num_rows)), [], decoding)
        names = [c for c in given.columns if c in self.table.columns]
        generated = self.generate_columns(given.reset_index(drop=True), names, decoding)
        return pd.concat([given[names].reset_index(drop=True), generated], axis=1)[self.table.columns]

    # --- evaluation ----------------------------------------------------------------------------------
    def _evaluate(self, batch: dict[str, Any], stage: str) -> None:
        self.log(f"{stage}/loss", self.loss(batch), batch_size=len(batch["rows"]), sync_dist=True)
        self._collect(stage, batch["rows"])

    def _report(self, stage: str) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]] | None:
        """Sample rows (one per evaluated row when conditioned) and compare each generated column's
        distribution with the evaluated rows'."""
        if not self._outputs.get(stage):
            return None
        real = pd.concat(self._outputs.pop(stage), ignore_index=True)
        if self.condition_on:
            synthetic = self.sample_rows(given=real[self.condition_on])
        else:
            synthetic = self.sample_rows(max(len(real), self.num_synthetic))
        generated = [c for c in self.table.columns if c not in self.condition_on]
        distances = marginal_distance(real[generated], synthetic[generated])
        self.log(f"{stage}/marginal_tvd", float(np.mean(list(distances.values()))), rank_zero_only=True)
        return real, synthetic, distances

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._report("val")
        self._outputs = {}

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        report = self._report("test")
        if report is None:
            return
        real, synthetic, distances = report
        lines = ["", "Per-column total variation distance, synthetic vs test rows (0 = same distribution):"]
        lines += [f"  {name:<32} {d:.3f}" for name, d in distances.items()]
        with pd.option_context("display.width", 160, "display.max_columns", 12):
            lines += ["Synthetic rows:", synthetic.head(self.num_examples).to_string(),
                      "Test rows:", real.head(self.num_examples).to_string()]
        rank_zero_info("\n".join(lines))

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        rows = batch["rows"]
        synthetic = self.sample_rows(len(rows), rows[self.condition_on] if self.condition_on else None)
        return synthetic.to_dict(orient="records")


def marginal_distance(real: pd.DataFrame, synthetic: pd.DataFrame, bins: int = 10) -> dict[str, float]:
    """Total variation distance between each column's distribution in ``real`` and in ``synthetic``.

    Numeric columns are compared over ``bins`` quantile bins of the real values, categorical ones over
    their values; missing is a value of its own. 0 means the same distribution, 1 disjoint ones.
    """
    out = {}
    for name in real.columns:
        a, b = real[name], synthetic[name]
        if is_number_column(a):
            x, y = (s.to_numpy(dtype=float, na_value=np.nan) for s in (a, b))
            finite = x[~np.isnan(x)]
            cuts = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]) if finite.size else np.zeros(0)
            a, b = (pd.Series(np.where(np.isnan(v), -1, np.searchsorted(cuts, v, "right"))) for v in (x, y))
        else:
            a, b = (s.astype(object).where(s.notna(), "<missing>") for s in (a, b))
        pa, pb = a.value_counts(normalize=True), b.value_counts(normalize=True)
        out[name] = 0.5 * float(pa.sub(pb, fill_value=0.0).abs().sum())
    return out
