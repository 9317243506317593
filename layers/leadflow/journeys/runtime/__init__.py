"""The journey runtime: contacts entering and leaving journeys from the event stream (entry), the
steps the state machines call (tasks: the step contract; steps: what each step does), enrollments
and stopping executions on purpose (stops)."""
