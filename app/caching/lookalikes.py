"""Hand-written look-alike pairs: near-identical wording, different meaning (must never hit), and
paraphrases that should hit. Written for this project; used by `llmgw cache eval` and the tests."""

from __future__ import annotations

# (cached question, new question) pairs that ask different things.
NEGATIVES: list[tuple[str, str]] = [
    ("How do I reset my password?", "How do I change my username?"),
    ("How do I reset my password?", "How do I reset my router?"),
    ("Is the store open on Sundays?", "Is the store closed on Sundays?"),
    ("What is the fastest way to run 10 miles?", "What is the fastest way to run 100 miles?"),
    ("Convert 5 kilometers to miles", "Convert 50 kilometers to miles"),
    ("How do I cancel my subscription?", "How do I renew my subscription?"),
    ("What is the capital of Australia?", "What is the capital of Austria?"),
    ("Can I take ibuprofen with alcohol?", "Can I take ibuprofen without food?"),
    ("How do I delete my account?", "How do I create an account?"),
    ("What time does the pharmacy open?", "What time does the pharmacy close?"),
    ("Should I buy Apple stock?", "Should I sell Apple stock?"),
    ("How many calories are in an apple?", "How many calories are in a banana?"),
    ("What is the population of Paris in 2020?", "What is the population of Paris in 1920?"),
    ("How do I upgrade to the premium plan?", "How do I downgrade from the premium plan?"),
    ("Is it safe to eat raw eggs?", "Is it not safe to eat raw eggs?"),
    ("Who won the World Cup in 2014?", "Who won the World Cup in 2018?"),
    ("How do I install Python on Windows?", "How do I install Python on Mac?"),
    ("What is the refund policy for flights?", "What is the refund policy for hotels?"),
    ("How long should I boil an egg for a soft yolk?", "How long should I boil an egg for a hard yolk?"),
    ("What is 15% of 200?", "What is 25% of 200?"),
    ("Translate 'good morning' into French", "Translate 'good morning' into Spanish"),
    ("How do I turn on dark mode?", "How do I turn off dark mode?"),
    ("Why is the sky blue?", "Why is the ocean blue?"),
    ("Can dogs eat grapes?", "Can cats eat grapes?"),
    ("How do I increase my credit limit?", "How do I decrease my credit limit?"),
]

# (cached question, new question) pairs that ask the same thing.
POSITIVES: list[tuple[str, str]] = [
    ("How do I reset my password?", "How can I reset my password?"),
    ("What is the capital of Australia?", "What's the capital city of Australia?"),
    ("Is the store open on Sundays?", "Is the shop open on Sunday?"),
    ("How do I cancel my subscription?", "How can I cancel my subscription?"),
    ("Why is the sky blue?", "Why does the sky look blue?"),
    ("Can dogs eat grapes?", "Are grapes safe for dogs to eat?"),
    ("How do I turn on dark mode?", "How can I enable dark mode?"),
    ("Who won the World Cup in 2014?", "Which country won the 2014 World Cup?"),
    ("How do I install Python on Windows?", "How to install Python on Windows?"),
    ("What time does the pharmacy open?", "When does the pharmacy open?"),
]
