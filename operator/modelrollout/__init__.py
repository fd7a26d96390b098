"""ModelRollout operator: canary and blue-green rollouts of ML models, judged by metrics from the pods."""
