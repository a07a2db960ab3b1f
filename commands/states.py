"""A release's states, in the order a release moves through them."""
PENDING, APPROVED, CANCELLED = "pending", "approved", "cancelled"
DEPLOYING, ROLLING_BACK, STABILISING = "deploying", "rolling_back", "stabilising"
ROLLED_BACK, FAILED, CLOSED = "rolled_back", "failed", "closed"

LIVE_STATES = (PENDING, APPROVED)  # still taking votes
IN_FLIGHT = (DEPLOYING, ROLLING_BACK)  # a deployment is running
# a planned window these occupy on the calendar (conflicts, slots, agenda)
SCHEDULED = (PENDING, APPROVED, DEPLOYING, ROLLING_BACK)
