// /compare: a changed filter reloads the page with it (the filters are query parameters, applied by the server).
"use strict";
for (const form of document.querySelectorAll("form[data-autosubmit]")) {
  for (const field of form.querySelectorAll("select, input[type=checkbox]")) {
    field.addEventListener("change", () => form.submit());
  }
}
