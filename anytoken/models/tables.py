"""Table rows: ``<bos> <task> [<table> given columns </table>] <table> generated columns </table>``.

The prompt is no bidirectional prefix, so training sees what KV-cache decoding sees; generation follows
``TableTokenizer.grammar(columns)`` (each column's tag, then a value from its block, in schema order).
Batches are ``{"rows": DataFrame}``; a ``"given"`` list in a batch fixes which columns the prompt holds.
With ``numeric_inputs="ple"`` a binned column's value token in the prompt also carries its exact value:
a piecewise-linear encoding over the column's bin edges (``anytoken.models.numeric``) is added to the bin
token's embedding; with ``"ple_only"`` it replaces it. Generated tokens are bins only (what decoding feeds
back), so there the bin token's embedding is the input.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from anytoken.heads import DecodingConfig
from anytoken.models.formats import AnytokenModel, TaskFormat, check_choice, open_segment, register_format
from anytoken.models.numeric import NumericEncoder
from anytoken.tokenizers.sequence import IGNORE_INDEX, Segment, SequenceBatch, Special, Tokens
from anytoken.tokenizers.table import TableTokenizer
from anytoken.tokenizers.table_schema import BinnedColumn, restore

try:
    import pandas as pd
except ImportError:  # the optional "data" extra: TableTokenizer says so when a table model is built
    pd = None


class TableFormat(TaskFormat):
    """What the table formats share: prompts of given columns and constrained row generation.

    Args:
        column_order: ``"fixed"`` (schema order) or ``"shuffle"`` (a random order per training row, an
            augmentation; evaluation and generation use the schema order the grammar fixes).
        numeric_inputs: ``"ple"`` (prompt values of binned columns add their piecewise-linear encoding to
            the bin token's embedding), ``"ple_only"`` (the encoding, with a learnt bias per column,
            replaces the bin token's embedding: no embedding is learnt per bin; the prediction task's default)
            or ``"bins"`` (the bin token alone: what a spec without this key, such as an older release,
            means). A mixture embeds its packed rows without the format, so there the encoding would stay
            untrained: the bin tokens alone.
    """

    tokenizer_types = {"table": TableTokenizer}
    samples_key = "rows"

    def __init__(self, column_order: Literal["fixed", "shuffle"] = "fixed",
                 numeric_inputs: Literal["ple", "ple_only", "bins"] = "bins") -> None:
        super().__init__()
        check_choice("column_order", column_order, ("fixed", "shuffle"))
        check_choice("numeric_inputs", numeric_inputs, ("ple", "ple_only", "bins"))
        self.column_order, self.numeric_inputs = column_order, numeric_inputs

    def bind(self, model: AnytokenModel) -> None:
        super().bind(model)
        self.table: TableTokenizer = model.tokenizers["table"]
        binned = [c for c in self.table.schema if isinstance(c, BinnedColumn)]
        self.numeric_columns = [c.name for c in binned] if self.numeric_inputs != "bins" else []
        if self.numeric_columns:
            edges = [[c.low, *c.cuts, max(c.high, c.low)] for c in binned]
            replace = self.numeric_inputs == "ple_only"
            self.numeric = NumericEncoder(edges, model.backbone.config.d_model, bias=replace)

    def embed(self, model: AnytokenModel, seq: SequenceBatch, batch: dict[str, Any]) -> torch.Tensor:
        """Token embeddings ``[B, T, d]`` where each prompt value of a binned column adds (``"ple"``) or is
        replaced by (``"ple_only"``) the encoding of the row's exact value. Rows are never packed here: row
        ``b`` is sample ``b``."""
        x = model.embed(seq, batch)  # (B, T, d)
        if not self.numeric_columns:
            return x
        rows = batch["rows"]
        fed = torch.nn.functional.pad(seq.targets[:, :-1] != IGNORE_INDEX, (1, 0))  # (B, T) generated inputs
        start = model.space.range("table").start
        ids, extra = seq.input_ids - start, torch.zeros_like(x)
        encoded = torch.zeros_like(fed)  # (B, T): positions that got an encoding
        for index, name in enumerate(self.numeric_columns):
            block = self.table.value_ids(name)
            at = (ids > block.start) & (ids < block.stop) & ~fed  # (B, T): not <missing>, in the prompt
            if name not in rows.columns or not bool(at.any()):
                continue
            b, t = at.nonzero(as_tuple=True)
            values = torch.tensor(rows[name].to_numpy(dtype=float, na_value=np.nan), device=x.device)
            extra[b, t] = self.numeric(index, values[b]).to(x.dtype)
            encoded |= at
        if self.numeric_inputs == "ple_only":
            x = x.masked_fill(encoded[..., None], 0.0)
        return x + extra

    def columns_for(self, batch: dict[str, Any]) -> tuple[list[str], list[str]]:
        """``(given, generated)`` column names of a batch; formats decide when the batch does not say."""
        raise NotImplementedError

    def samples(self, model: AnytokenModel, batch: dict[str, Any], targets: bool) -> list[list[Segment]]:
        """Segments per row; without targets the prompt ends in an open table segment (holding the first
        generated column's tag when ``batch["open_tag"]``, for scoring that column's values)."""
        rows, (given, generated) = batch["rows"], self.columns_for(batch)
        order = self.column_order if self.training else "fixed"
        rng = np.random.default_rng(int(torch.randint(2**31 - 1, ()))) if order == "shuffle" else None
        head = [Special("<bos>"), Special(f"<{self.tags[0]}>")]
        prompts = [head] * len(rows)
        if given:
            known = self.table.encode(rows, columns=given, order=order, rng=rng)  # (B, P)
            prompts = [[*head, Tokens("table", ids)] for ids in known]
        if targets:
            ids = self.table.encode(rows, columns=generated, order=order, rng=rng)  # (B, L)
            return self.with_targets(prompts, "table", ids)
        opened = [self.table.tag_id(generated[0])] if batch.get("open_tag") else []
        return [[*prompt, open_segment("table", opened)] for prompt in prompts]

    @torch.no_grad()
    def generate_columns(self, model: AnytokenModel, rows: pd.DataFrame, given: list[str],
                         decoding: DecodingConfig | None = None, chunk: int = 256) -> pd.DataFrame:
        """The other columns of ``rows`` (schema order) generated from their ``given`` columns, ``chunk`` rows
        at once (``decoding``'s ``max_new_tokens`` is set to fit a row)."""
        generated = [c for c in self.table.columns if c not in given]
        if not generated:
            raise ValueError("every column is given: nothing to generate")
        grammar = self.table.grammar(generated)
        decoding = self.budget(model, decoding, grammar.max_length)
        parts = []
        for start in range(0, len(rows), chunk):
            batch = {"rows": rows.iloc[start:start + chunk], "given": given}
            ids = model.generate(self, batch, "table", decoding, grammar)  # local ids per row
            parts.append(self.table.decode(torch.stack(ids)))
        if not parts:
            return self.table.decode(torch.zeros(0, grammar.max_length, dtype=torch.long))[generated]
        return pd.concat(parts, ignore_index=True)


@register_format
class TableGenerationFormat(TableFormat):
    """Synthetic rows, unconditionally or conditioned on some columns.

    Args (and ``column_order``, ``numeric_inputs``: see ``TableFormat``):
        condition_prob: share of training batches whose prompt holds a random proper subset of the columns.
        condition_on: columns given when evaluating and predicting (None: unconditional rows).
        num_synthetic: unconditional rows sampled per evaluated batch (at least its rows) to compare with it.
    """

    kind = "table_generation"
    tags = ("table_generate",)

    def __init__(
        self,
        column_order: Literal["fixed", "shuffle"] = "fixed",
        condition_prob: float = 0.5,
        condition_on: list[str] | None = None,
        num_synthetic: int = 512,
        numeric_inputs: Literal["ple", "ple_only", "bins"] = "bins",
    ) -> None:
        super().__init__(column_order, numeric_inputs)
        if not 0.0 <= condition_prob <= 1.0:
            raise ValueError(f"condition_prob must lie in [0, 1], got {condition_prob}")
        if num_synthetic < 1:
            raise ValueError(f"num_synthetic must be >= 1, got {num_synthetic}")
        self.condition_prob, self.condition_on = condition_prob, list(condition_on or [])
        self.num_synthetic = num_synthetic

    def bind(self, model: AnytokenModel) -> None:
        super().bind(model)
        unknown = sorted(set(self.condition_on) - set(self.table.columns))
        if unknown or len(self.condition_on) >= len(self.table.columns):
            raise ValueError(f"condition_on must be a proper subset of the columns {self.table.columns}, "
                             f"got {self.condition_on}")

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

    def sample_rows(self, model: AnytokenModel, num_rows: int | None = None,
                    given: pd.DataFrame | None = None,
                    decoding: DecodingConfig | None = None) -> pd.DataFrame:
        """``num_rows`` synthetic rows, or one per row of ``given`` completing its columns (schema order)."""
        if given is None:
            if num_rows is None or num_rows < 0:
                raise ValueError("sample_rows needs num_rows >= 0 or a frame of given columns")
            return self.generate_columns(model, pd.DataFrame(index=range(num_rows)), [], decoding)
        names = [c for c in given.columns if c in self.table.columns]
        generated = self.generate_columns(model, given.reset_index(drop=True), names, decoding)
        return pd.concat([given[names].reset_index(drop=True), generated], axis=1)[self.table.columns]


def standardiser(codec: BinnedColumn) -> tuple[float, float]:
    """``(center, scale)`` that standardise a binned column's values: its bin representatives' mean and
    spread (quantile bins hold about equal counts, so they stand for the values)."""
    return float(np.mean(codec.reps)), float(np.std(codec.reps)) or 1.0


@register_format
class TablePredictionFormat(TableFormat):
    """Predict one column from the others: ``<table> other columns </table> <table> target tag, value
    </table>``, decoded under the target's grammar.

    Args (and ``column_order``, ``numeric_inputs``: see ``TableFormat``):
        target: the column to predict (any column of the fitted table).
        regression: for a binned numeric target, ``"mean"`` (the bin representatives weighted by the model's
            probabilities, which lowers squared error), ``"mode"`` (the most likely bin, by constrained
            decoding) or ``"head"`` (a linear value head on the hidden state that predicts the bin, trained
            with squared error on the standardised value beside the bin's cross-entropy, as xVal's number
            head, Golkar et al. 2023: the bin token stays for generation; the format's own loss trains it,
            so not in a mixture, which packs rows without the format); digit-encoded targets are always
            decoded.
        linear_term: the prediction adds a linear function of the standardised binned features (missing:
            their mean), starting at zero: a wide-and-deep model (Cheng et al. 2016) whose linear part
            extrapolates beyond the training range as linear (or logistic) regression does, where the
            network's normalised hidden state levels off; the network fits what the linear part leaves.
            It adds to the value head's number, or to the logits of a one-token categorical target (then
            trained by their own cross-entropy beside the sequence's); other targets have none.
    """

    kind = "table_prediction"
    tags = ("table_predict",)

    def __init__(
        self,
        column_order: Literal["fixed", "shuffle"] = "fixed",
        target: str = "target",
        regression: Literal["mean", "mode", "head"] = "mean",
        numeric_inputs: Literal["ple", "ple_only", "bins"] = "bins",
        linear_term: bool = False,
    ) -> None:
        super().__init__(column_order, numeric_inputs)
        check_choice("regression", regression, ("mean", "mode", "head"))
        self.target, self.regression, self.linear_term = target, regression, linear_term
        self.value_head: nn.Linear | None = None
        self.linear: nn.Linear | None = None  # the linear term: standardised features -> value or logits

    def bind(self, model: AnytokenModel) -> None:
        super().bind(model)
        if self.target not in self.table.columns:
            raise ValueError(f"target {self.target!r} is not a column of the table: {self.table.columns}")
        if len(self.table.columns) < 2:
            raise ValueError("prediction needs at least one column besides the target")
        codec = self.table.column(self.target)
        if self.regression == "head" and isinstance(codec, BinnedColumn):
            self.value_center, self.value_scale = standardiser(codec)
            self.value_head = nn.Linear(model.backbone.config.d_model, 1)
        outputs = 1 if self.value_head is not None else codec.size if self.is_one_token_class else 0
        features = [c for c in self.table.schema if isinstance(c, BinnedColumn) and c.name != self.target]
        if self.linear_term and features and outputs:
            self.linear_columns = [c.name for c in features]
            self.linear_center, self.linear_scale = (torch.tensor(v, dtype=torch.float64)
                                                     for v in zip(*map(standardiser, features)))
            self.linear = nn.Linear(len(features), outputs, bias=False)
            nn.init.zeros_(self.linear.weight)

    @property
    def features(self) -> list[str]:
        """The columns the target is predicted from, in schema order."""
        return [c for c in self.table.columns if c != self.target]

    @property
    def is_one_token_class(self) -> bool:
        """Whether the target is categorical with one value token (its logits read off in one pass)."""
        return self.is_classification and self.table.column(self.target).value_len == 1

    @property
    def is_classification(self) -> bool:
        """Whether the target is categorical (scored by accuracy, else by RMSE and MAE)."""
        return self.table.column(self.target).kind == "categorical"

    def columns_for(self, batch: dict[str, Any]) -> tuple[list[str], list[str]]:
        return self.features, [self.target]

    def loss(self, model: AnytokenModel, batch: dict[str, Any]) -> torch.Tensor:
        """The row's next-token cross-entropy plus, with the value head, its squared error on the
        standardised target, or, with a class's linear term, the cross-entropy of the target's logits with
        the term (rows whose target is missing add neither)."""
        seq = self.rows(model, batch)
        hidden = model.hidden_states(seq, self.embed(model, seq, batch))  # (B, T, d)
        loss = model.lm_loss(seq, hidden)
        if self.value_head is None and self.linear is None:
            return loss
        block, rows = self.table.value_ids(self.target), batch["rows"]
        ids = seq.targets - model.space.range("table").start  # (B, T); prompt positions: below 0
        b, t = ((ids > block.start) & (ids < block.stop)).nonzero(as_tuple=True)  # a target value next
        if self.value_head is None:  # a class with the linear term
            return loss + F.cross_entropy(self._logits(model, hidden[b, t], rows, b), ids[b, t] - block.start)
        truth = torch.tensor(rows[self.target].to_numpy(dtype=float, na_value=np.nan))
        truth = ((truth - self.value_center) / self.value_scale).to(hidden.device, torch.float32)[b]
        return loss + F.mse_loss(self._value(hidden[b, t], rows, b), truth)

    def _linear(self, rows: pd.DataFrame, index: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        """The linear term ``[N, outputs]`` of ``rows`` (or of ``rows`` at ``index`` ``[N]``)."""
        features = rows[self.linear_columns].to_numpy(dtype=float, na_value=np.nan)  # (N, features)
        z = ((torch.from_numpy(features) - self.linear_center) / self.linear_scale).nan_to_num(0.0)
        return self.linear((z if index is None else z[index.cpu()]).to(device, torch.float32))

    def _value(self, hidden: torch.Tensor, rows: pd.DataFrame,
               index: torch.Tensor | None = None) -> torch.Tensor:
        """The standardised target ``[N]`` the value head predicts from ``hidden`` ``[N, d]``, the states of
        ``rows`` (or of ``rows`` at ``index`` ``[N]``), with the linear term when there is one."""
        value = self.value_head(hidden).squeeze(-1).float()
        return value if self.linear is None else value + self._linear(rows, index, hidden.device).squeeze(-1)

    def _logits(self, model: AnytokenModel, hidden: torch.Tensor, rows: pd.DataFrame,
                index: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[N, size]`` of the target's value block at ``hidden`` ``[N, d]``, the states of ``rows``
        (or of ``rows`` at ``index``), with a class's linear term when there is one."""
        ids = torch.as_tensor(self.table.value_ids(self.target), device=hidden.device)
        logits = model.lm_head(hidden).float()[:, ids + model.space.range("table").start]  # (N, size)
        if self.linear is None or self.value_head is not None:
            return logits
        return logits + self._linear(rows, index, hidden.device)

    def _tag_hidden(self, model: AnytokenModel, rows: pd.DataFrame) -> torch.Tensor:
        """Hidden states ``[N, d]`` right after the target's tag: where its value is predicted."""
        codec = self.table.column(self.target)
        if codec.value_len != 1:
            raise ValueError(f"a one-token target is needed here, but {self.target!r} is {codec.kind}")
        batch = {"rows": rows, "open_tag": True}
        seq = self.rows(model, batch, targets=False)  # left-padded: every prompt ends at the tag
        return model.hidden_states(seq, self.embed(model, seq, batch))[:, -1]  # (N, d)

    @torch.no_grad()
    def column_probs(self, model: AnytokenModel, rows: pd.DataFrame) -> torch.Tensor:
        """Probabilities ``[N, size]`` over the target's value block (categorical ``<missing>, <unk>,
        categories...``; binned ``<missing>, bins...``)."""
        return self._logits(model, self._tag_hidden(model, rows), rows).softmax(-1).cpu()  # (N, size)

    def most_likely(self, probs: torch.Tensor) -> pd.Series:
        """The target value of each row's most likely entry of ``probs`` ``[N, size]`` (``column_probs``,
        or an average of several models' ones); ``<missing>``/``<unk>`` give missing values."""
        local = probs.argmax(-1) + self.table.value_ids(self.target).start  # (N,) local ids
        tags = torch.full_like(local, self.table.tag_id(self.target))
        return self.table.decode(torch.stack([tags, local], 1))[self.target]

    @torch.no_grad()
    def predict(self, model: AnytokenModel, rows: pd.DataFrame,
                decoding: DecodingConfig | None = None) -> pd.Series:
        """The target's predicted value for each row (the target column itself may be absent): the value
        head's or the bins' mean (numbers, ``regression``), else the most likely value; ``decoding`` applies
        to targets of several tokens (digits), which are generated."""
        codec = self.table.column(self.target)
        if isinstance(codec, BinnedColumn) and self.regression != "mode":
            if self.regression == "head":  # bind built the value head for a binned target
                values = self._value(self._tag_hidden(model, rows), rows).double().cpu()
                values = values * self.value_scale + self.value_center
            else:
                probs = self.column_probs(model, rows)[:, 1:].double()  # (N, bins): <missing> left out
                reps = torch.tensor(codec.reps, dtype=torch.double)
                values = (probs @ reps) / probs.sum(-1).clamp(min=1e-12)
            return restore(values.numpy(), np.zeros(len(rows), dtype=bool), codec.dtype).rename(self.target)
        if codec.value_len == 1:  # greedy decoding under the grammar, read off in one pass
            return self.most_likely(self.column_probs(model, rows))
        return self.generate_columns(model, rows.reset_index(drop=True), self.features, decoding)[self.target]
