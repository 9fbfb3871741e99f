//! Turning a domain into what the VMM runs.
