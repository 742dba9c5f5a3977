"""What patients are told: the reviewed wording of every feedback message
(:mod:`pghd.feedback.wording`, its text in ``templates.json``)."""
