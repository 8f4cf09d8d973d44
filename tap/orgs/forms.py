from django import forms
from django.contrib.auth.forms import AuthenticationForm

from tap.orgs.models import Role


class SignupForm(forms.Form):
    name = forms.CharField(
        max_length=150,
        required=False,
        label="Your name",
        widget=forms.TextInput(attrs={"autofocus": True, "autocomplete": "name"}),
    )
    email = forms.EmailField(
        max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"})
    )
    password1 = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="At least 8 characters, not too common, not all digits.",
    )
    password2 = forms.CharField(
        label="Password again",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self):
        data = super().clean()
        if data.get("password1") and data.get("password1") != data.get("password2"):
            self.add_error("password2", "The two passwords differ.")
        return data


class LoginForm(AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "That email and password do not match an account.",
    }


class OrganizationForm(forms.Form):
    name = forms.CharField(
        max_length=120,
        label="Organisation name",
        widget=forms.TextInput(attrs={"autofocus": True}),
    )


class InviteForm(forms.Form):
    email = forms.EmailField(max_length=254)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class DeleteOrgForm(forms.Form):
    confirm = forms.CharField(label="Type the organisation's web address (slug) to confirm")

    def __init__(self, *args, org, **kwargs):
        super().__init__(*args, **kwargs)
        self.org = org

    def clean_confirm(self):
        value = self.cleaned_data["confirm"].strip()
        if value != self.org.slug:
            raise forms.ValidationError(f"Type {self.org.slug} to confirm.")
        return value


class RetentionForm(forms.Form):
    transcript_retention_days = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=3650,
        label="Delete transcripts after (days)",
        help_text="Conversations and their messages are deleted this many days after their "
        "last message, by a daily job. Leave empty to keep them.",
    )
