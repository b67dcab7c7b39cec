from django.urls import URLPattern, URLResolver, path

from accounts.api import views
from accounts.api.payloads import AccountDeleter, UserRenderer


def account_urlpatterns(
    *, render_user: UserRenderer, delete_account: AccountDeleter
) -> list[URLPattern | URLResolver]:
    """The account endpoints; `render_user` composes the `user` object of their answers
    (the project's, with the tier and usage: `gemini_clone.user_payload`), `delete_account`
    removes an account with the data of every app (`gemini_clone.account_deletion`)."""
    renders = {"render_user": render_user}
    return [
        path(
            "user/me",
            views.MeView.as_view(**renders, delete_account=delete_account),
            name="user-me",
        ),
        path("auth/send-otp", views.SendOtpView.as_view(), name="auth-send-otp"),
        path("auth/verify-otp", views.VerifyOtpView.as_view(**renders), name="auth-verify-otp"),
        path("auth/signup", views.SignupView.as_view(**renders), name="auth-signup"),
        path("auth/login", views.LoginView.as_view(**renders), name="auth-login"),
        path("auth/token/refresh", views.TokenRefreshView.as_view(), name="auth-token-refresh"),
        path("auth/logout", views.LogoutView.as_view(), name="auth-logout"),
        path(
            "auth/forgot-password",
            views.ForgotPasswordView.as_view(),
            name="auth-forgot-password",
        ),
        path("auth/reset-password", views.ResetPasswordView.as_view(), name="auth-reset-password"),
        path(
            "auth/change-password",
            views.ChangePasswordView.as_view(),
            name="auth-change-password",
        ),
    ]
