"""The drafter interface: what a speculative decoder needs from any draft source.

A drafter keeps its own state (KV cache, features) in step with the committed sequence. The
decoder drives it through one fixed protocol per sequence::

    drafter.prefill(input_ids, features)          # once, prompt [1, L]
    loop:
        tree = drafter.propose(policy, sampling, generator)
        ...target verifies tree...
        drafter.commit(new_tokens, accepted_nodes, features)

Committed sequence and the root. The last committed token (initially the prompt's last token,
later the target's bonus/correction token) is the *root* of the next tree: the target has not
yet run on it. A drafter proposes continuations of the whole committed sequence, root included.

Target features. A drafter that conditions on the target's hidden states (EAGLE heads) sets
:attr:`Drafter.target_layers` to the indices it needs into the target's
``output_hidden_states`` tuple. With Hugging Face models index ``0`` is the embedding output,
``i`` the output of decoder layer ``i`` and ``-1`` (= ``num_layers``) the *final-norm* output,
the ``lm_head`` input. EAGLE-1/2 use ``(-1,)``; EAGLE-3 uses three layers, e.g.
``(2, L // 2, L - 3)``. The decoder asks the target for hidden states only when
``target_layers`` is non-empty, and passes :class:`TargetFeatures` aligned with tokens:

* ``prefill``: features of ``input_ids[:, :-1]`` (``L - 1`` positions; None when ``L == 1``).
* ``commit``: features of ``[old root] + accepted tokens`` (``m + 1`` positions), i.e. exactly the
  positions the target ran on and kept this step.

In both cases ``features[:, j]`` is the target's state at the position whose *next* token is
``tokens[:, j]`` (prefill: ``input_ids[:, j + 1]``; commit: ``new_tokens[:, j]``), the
(feature, next token) pairs an EAGLE head consumes. The newest root's features arrive with the
next commit.
"""

from __future__ import annotations

import abc
import dataclasses

import torch

from adaspec.decoding.sampling import SamplingConfig
from adaspec.decoding.tree import DraftTree, TreePolicy


@dataclasses.dataclass
class TargetFeatures:
    """Target hidden states handed to a drafter.

    Attributes:
        hidden_states: One tensor ``[1, k, H]`` per entry of the drafter's ``target_layers``,
            in that order.
    """

    hidden_states: tuple[torch.Tensor, ...]

    @property
    def length(self) -> int:
        """Number of positions ``k``."""
        return int(self.hidden_states[0].shape[1]) if self.hidden_states else 0

    def select(self, positions: torch.Tensor) -> TargetFeatures:
        """Features at ``positions`` (LongTensor ``[k']``) of the sequence dimension."""
        return TargetFeatures(tuple(h.index_select(1, positions) for h in self.hidden_states))

    @classmethod
    def from_output(cls, hidden_states, layers: tuple[int, ...]) -> TargetFeatures:
        """Pick ``layers`` from a model output's ``hidden_states`` tuple."""
        return cls(tuple(hidden_states[i] for i in layers))


class Drafter(abc.ABC):
    """Proposes draft trees for a target model; one sequence (batch size 1) at a time.

    Subclasses set :attr:`target_layers` (empty when no target features are needed) and
    :attr:`vocab_size` (columns of the draft's distributions).
    """

    #: Indices into the target's ``output_hidden_states`` the drafter needs (empty: none).
    target_layers: tuple[int, ...] = ()
    #: Width of the draft's distributions (tokens it may propose are below it).
    vocab_size: int

    @abc.abstractmethod
    def prefill(self, input_ids: torch.Tensor, features: TargetFeatures | None) -> None:
        """Start a new sequence (drops any previous state).

        Args:
            input_ids: LongTensor ``[1, L]``, the prompt; its last token is the first root.
            features: Target features of ``input_ids[:, :-1]`` when :attr:`target_layers` is
                set and ``L > 1``, else None.
        """

    @abc.abstractmethod
    def propose(
        self,
        policy: TreePolicy,
        sampling: SamplingConfig,
        generator: torch.Generator | None = None,
    ) -> DraftTree:
        """Draft a tree continuing the committed sequence.

        Args:
            policy: Tree shape (:class:`~adaspec.decoding.tree.StaticTree`, a chain, or
                :class:`~adaspec.decoding.tree.DynamicTree`).
            sampling: The target's sampling settings. Greedy: children are the draft's top-k.
                Otherwise children must be drawn without replacement from the returned
                ``q`` rows, siblings listed in draw order, and the number of children of a
                node must not depend on those children's values.
            generator: Random stream for sampled drafts.

        Returns:
            The :class:`~adaspec.decoding.tree.DraftTree`.
        """

    @abc.abstractmethod
    def commit(
        self,
        new_tokens: torch.Tensor,
        accepted_nodes: torch.Tensor,
        features: TargetFeatures | None,
    ) -> None:
        """Advance the committed sequence after verification.

        Args:
            new_tokens: LongTensor ``[1, m + 1]``: the accepted draft tokens, then the target's
                bonus/correction token (the new root).
            accepted_nodes: LongTensor ``[m]``: indices of the accepted nodes in the last
                proposed tree (lets a drafter keep the KV entries it computed for them).
            features: Target features of ``[old root] + accepted tokens`` when requested.
        """
