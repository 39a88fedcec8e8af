"""The ground floor: what every layer above shares; it imports no app of ours."""
