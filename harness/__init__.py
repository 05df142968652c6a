"""What tests, benchmarks and the demo use to drive the products; never imported by edge or sync.

    harness.demo        a centre and a counter in one process with the sample data (scripts/demo)
    harness.simulate    simulated devices: real signed journal entries, no files
    harness.faultproxy  a TCP proxy that breaks a share of connections (chaos tests of the uplink)

It imports both products freely; an import-linter contract (pyproject.toml) keeps the products from
importing it. It is not shipped in the wheel: it runs from the checkout.
"""
