// Signs in to a Cognito user pool with amazon-cognito-identity-js (the browser app's SRP client), under node:
// node srp_cognito_js_signin.js ENDPOINT POOL_ID CLIENT_ID USERNAME PASSWORD [NEW_PASSWORD] -> one JSON line.
const { CognitoUserPool, CognitoUser, AuthenticationDetails } = require("amazon-cognito-identity-js");
const [endpoint, poolId, clientId, username, password, newPassword] = process.argv.slice(2);
const pool = new CognitoUserPool({ UserPoolId: poolId, ClientId: clientId, endpoint });
const user = new CognitoUser({ Username: username, Pool: pool });
user.setAuthenticationFlowType("USER_SRP_AUTH");
const done = (out) => { console.log(JSON.stringify(out)); };
const callbacks = {
  onSuccess: (session) => done({ ok: true, id: session.getIdToken().getJwtToken() }),
  onFailure: (err) => done({ ok: false, code: err.code, message: err.message }),
  newPasswordRequired: () => {
    if (!newPassword) { done({ ok: false, code: "NEW_PASSWORD_REQUIRED" }); return; }
    user.completeNewPasswordChallenge(newPassword, {}, callbacks);
  },
};
user.authenticateUser(new AuthenticationDetails({ Username: username, Password: password }), callbacks);
