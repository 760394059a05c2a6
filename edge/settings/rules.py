"""The ``[rules]`` section: which labels alert, which are compliant, cooldowns."""

from __future__ import annotations

from pydantic import Field, model_validator

from .base import Cooldown, _Section


class RulesConfig(_Section):
    """Which labels alert, which count as compliant, and the cooldowns."""

    # The defaults are labels the default models output: a label no configured model can
    # output is an error in check-config (see rule_label_problems).
    alert_on_classifier: list[str] = Field(
        default_factory=lambda: ["no_mask", "mask_incorrect"],
        description="Classifier labels that are a violation (buzzer + red LED), e.g. not_me for a me/not_me "
        "classifier",
    )
    alert_on_detector: list[str] = Field(
        default_factory=list,
        description="Detector labels that are a violation by themselves (no classifier needed), e.g. "
        "facetouch for a face-touch detector",
    )
    compliant_on_classifier: list[str] = Field(
        default_factory=lambda: ["mask"],
        description="Classifier labels that are compliant (green LED), e.g. me",
    )
    min_score: float = Field(
        0.5, ge=0.0, le=0.99, description="Votes below this classifier/detector score are ignored (1 would "
        "ignore every vote: int8 probabilities stop at 0.996)"
    )
    compliant_needs_all_classifiers: bool = Field(
        True, description="With several classifiers (mask + identity): green only once every classifier of "
        "the face has settled and none is a violation (me + mask: green; me + no_mask, not_me: alert only)",
    )
    track_cooldown_s: Cooldown = Field(
        30.0, description="A track in violation alerts again at most this often"
    )
    global_cooldown_s: float = Field(
        3.0, ge=0.0, le=3600.0, description="No two alerts closer than this, whatever the track"
    )

    @model_validator(mode="after")
    def _alert_or_compliant(self) -> "RulesConfig":
        both = {lab.casefold() for lab in self.alert_on_classifier} & {
            lab.casefold() for lab in self.compliant_on_classifier}
        if both:
            raise ValueError(f"{', '.join(sorted(both))} both alerts (alert_on_classifier) and is compliant "
                             "(compliant_on_classifier)")
        return self
