"""The ranking stages that re-order a fused list: what they share (:mod:`search.rank.context`),
behavioural signals (:mod:`search.rank.behaviour`) and personalisation
(:mod:`search.rank.personal`). The signals and profiles they read are folded out of shopper
events by :mod:`events.signals` and :mod:`events.profiles`."""
