"""The seeded chaos campaign (issue 10): a fault plan from a seed, real boxes to inject it into, the checks after
each job, and the report. `bench/chaos_campaign.py` runs it at length; tests/e2e/test_chaos_short.py briefly."""
