// Sign-in with Cognito's own flows through amazon-cognito-identity-js: SRP (the password never leaves the
// browser), the first sign-in's NEW_PASSWORD_REQUIRED, and a TOTP code when the pool asks for one.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const next = Loupe.safeNext(params.get("next"));
  let user = null;

  function step(name) {
    for (const form of document.querySelectorAll("form[data-step]")) form.hidden = form.dataset.step !== name;
    const first = document.querySelector(`form[data-step="${name}"] input`);
    if (first) first.focus();
  }

  function busy(on) {
    for (const button of document.querySelectorAll("form button")) button.disabled = on;
  }

  function failed(err) {
    busy(false);
    Loupe.show(err && err.message ? err.message : String(err), "error");
  }

  const callbacks = {
    onSuccess() {
      busy(false);
      location.replace(next);
    },
    onFailure: failed,
    newPasswordRequired() {
      busy(false);
      Loupe.show("Choose your own password to finish your first sign-in.", "info");
      step("new-password");
    },
    totpRequired() {
      busy(false);
      step("totp");
    },
    mfaSetup() {
      user.associateSoftwareToken({
        associateSecretCode(secret) {
          busy(false);
          $("mfa-secret").textContent = secret;
          step("mfa-setup");
        },
        onFailure: failed,
      });
    },
  };

  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    busy(true);
    try {
      const pool = await Loupe.pool();
      const email = $("email").value.trim();
      user = new AmazonCognitoIdentity.CognitoUser({ Username: email, Pool: pool, Storage: window.sessionStorage });
      user.setAuthenticationFlowType("USER_SRP_AUTH");
      const details = new AmazonCognitoIdentity.AuthenticationDetails({ Username: email, Password: $("password").value });
      user.authenticateUser(details, callbacks);
    } catch (err) {
      failed(err);
    }
  });

  $("new-password-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const chosen = $("new-password").value;
    if (chosen !== $("new-password-again").value) return Loupe.show("The two passwords differ.", "error");
    busy(true);
    user.completeNewPasswordChallenge(chosen, {}, callbacks);
  });

  $("totp-form").addEventListener("submit", (event) => {
    event.preventDefault();
    busy(true);
    user.sendMFACode($("totp-code").value.trim(), callbacks, "SOFTWARE_TOKEN_MFA");
  });

  $("mfa-setup-form").addEventListener("submit", (event) => {
    event.preventDefault();
    busy(true);
    // with the sign-in's session, a verified code also answers the MFA_SETUP challenge: the person is signed in
    user.verifySoftwareToken($("mfa-setup-code").value.trim(), "authenticator", callbacks);
  });

  if (params.get("signedout")) Loupe.show("You are signed out.", "ok");
  step("password");
})();
