"""Lets peft 0.21 run prefix tuning on transformers 5.24's BERT.

transformers 5.24's BertModel takes a key/value prefix as `cache` (a Cache; its decorator renames a
`past_key_values` argument to it), but peft's _prefix_tuning_forward looks for a parameter literally named
past_key_values in BertModel.forward's signature and otherwise raises "Model does not support past key values
which are required for prefix tuning." `accept_past_key_values` wraps BertModel.forward in a function that has
that parameter and passes it on as `cache`: the computation stays transformers' own.
"""

import transformers.models.bert.modeling_bert as modeling_bert


def accept_past_key_values():
    original = modeling_bert.BertModel.forward
    if getattr(original, "accepts_past_key_values", False):
        return

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                past_key_values=None, cache=None, **kwargs):
        return original(self, input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                        position_ids=position_ids, inputs_embeds=inputs_embeds,
                        cache=cache if past_key_values is None else past_key_values, **kwargs)

    forward.accepts_past_key_values = True
    modeling_bert.BertModel.forward = forward
