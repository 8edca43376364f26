"""GAMBITTS with optional prompting (the seed's appendix A): a gate policy decides whether to send at all.

``optional_prompting(gate, prompter)`` puts a two-action gate (0 = don't send, 1 = send) in front of any
prompt policy; actions are 0 = send nothing, 1 + a = send prompt a. Re-exported by ``agents.gambitts``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from structbandits.agents.protocol import ActInfo, Policy, init_state
from structbandits.errors import ValidationError

__all__ = ["OptionalPromptingParams", "OptionalPromptingState", "optional_prompting"]


class OptionalPromptingParams(NamedTuple):
    """The two inner policies' params: ``gate``, ``prompter`` (either None for a policy without any)."""

    gate: object
    prompter: object


class OptionalPromptingState(NamedTuple):
    """``gate`` state of the send / don't-send policy, ``prompter`` state of the prompt policy.

    ``params`` (a property: the inner states already hold them) is ``OptionalPromptingParams``.
    """

    gate: object
    prompter: object

    @property
    def params(self) -> OptionalPromptingParams:
        return OptionalPromptingParams(getattr(self.gate, "params", None), getattr(self.prompter, "params", None))


def optional_prompting(gate: Policy, prompter: Policy) -> Policy:
    """GAMBITTS with optional prompting (the seed's appendix A): a gate decides whether to send at all.

    Actions: 0 = send nothing, 1 + a = send prompt a. Each round the gate (a two-action policy:
    0 = don't send, 1 = send; e.g. ``standard_ts(2, num_cells=C)``) decides; when it sends, the prompt
    policy picks the prompt and, alone, learns from that round (it sees ``treatments[a]``). The gate
    learns from every round. The propensity is P(gate) · P(prompt | send) when sending, P(gate) when not.
    Params: ``OptionalPromptingParams(gate.params, prompter.params)``.
    """
    if not isinstance(gate, Policy) or not isinstance(prompter, Policy):
        raise ValidationError("gate / prompter: expected two Policy objects, got "
                              f"{type(gate).__name__} and {type(prompter).__name__}")

    defaults = OptionalPromptingParams(gate.params, prompter.params)

    def init(key: jax.Array, params: OptionalPromptingParams | None = None) -> OptionalPromptingState:
        params = defaults if params is None else params
        gate_key, prompter_key = jax.random.split(key)
        return OptionalPromptingState(init_state(gate, gate_key, params.gate),
                                      init_state(prompter, prompter_key, params.prompter))

    def act(state: OptionalPromptingState, key: jax.Array, context) -> tuple[jax.Array, ActInfo]:
        gate_key, prompter_key = jax.random.split(key)
        send, gate_info = gate.act(state.gate, gate_key, context)
        prompt, prompt_info = prompter.act(state.prompter, prompter_key, context)
        action = jnp.where(send == 1, prompt + 1, 0)
        propensity = jnp.where(send == 1, gate_info.propensity * prompt_info.propensity, gate_info.propensity)
        return action, ActInfo(propensity)

    def update(state: OptionalPromptingState, context, action: jax.Array, reward: jax.Array) -> OptionalPromptingState:
        sent = action > 0
        gate_state = gate.update(state.gate, context, sent.astype(action.dtype), reward)
        updated = prompter.update(state.prompter, context, jnp.maximum(action - 1, 0), reward)
        prompter_state = jax.tree.map(lambda new, old: jnp.where(sent, new, old), updated, state.prompter)
        return OptionalPromptingState(gate_state, prompter_state)

    return Policy(init, act, update, params=defaults)
