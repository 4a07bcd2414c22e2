// Sign-in: trades the admin token for a session cookie, then opens the dashboard.
"use strict";
document.getElementById("signin").addEventListener("submit", async (event) => {
  event.preventDefault();
  const field = document.getElementById("token");
  const error = document.getElementById("signin-error");
  error.hidden = true;
  const response = await fetch("/admin/login", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ token: field.value }),
    credentials: "same-origin",
  });
  field.value = "";
  if (response.ok) {
    window.location.assign("/admin/");
    return;
  }
  let message = "sign-in failed (" + response.status + ")";
  try {
    message = (await response.json()).error.message;
  } catch (_) {
    // keep the status line
  }
  error.textContent = message;
  error.hidden = false;
});
