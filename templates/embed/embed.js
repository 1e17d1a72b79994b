/* leadflow embed: renders a form into the page that loads this script and
   posts it as JSON. Paste:
     div data-leadflow-form="SLUG", then https://LEADFLOW/f/SLUG/embed.js
   (a div, then a script tag loading this file, async). The form brings a
   plain look the site's CSS overrides; data-leadflow-style="none" on the
   div turns it off.
   Everything is built with DOM calls and textContent: nothing the marketer
   or a visitor typed is ever parsed as HTML. */
(function () {
  "use strict";
  var config = {{ config|safe }};
  var def = config.definition, text = config.text;
  var script = document.currentScript;
  var host = document.querySelector('[data-leadflow-form="' + config.slug + '"]:not([data-leadflow-ready])');
  if (!host) {
    host = document.createElement("div");
    script.parentNode.insertBefore(host, script);
  }
  host.setAttribute("data-leadflow-ready", "1");

  // A plain default look, once per page, so the form is readable on any site.
  // :where() gives every rule zero specificity: the site's own CSS wins, and
  // data-leadflow-style="none" on the div leaves the styling to the site alone.
  if (host.getAttribute("data-leadflow-style") !== "none" && !document.getElementById("leadflow-embed-style")) {
    var style = document.createElement("style");
    style.id = "leadflow-embed-style";
    style.textContent = [
      ":where(.leadflow-form) { max-width: 36rem; font: inherit; line-height: 1.4; }",
      ":where(.leadflow-form .leadflow-field) { margin: 0 0 1rem; border: 0; padding: 0; }",
      ":where(.leadflow-form label, .leadflow-form legend) { display: block; font-weight: 600; margin-bottom: .25rem; }",
      ":where(.leadflow-form .leadflow-choice) { font-weight: 400; }",
      ":where(.leadflow-form input:not([type=checkbox]):not([type=radio]), .leadflow-form select, .leadflow-form textarea)" +
        " { display: block; box-sizing: border-box; width: 100%; padding: .5rem; font: inherit;" +
        " border: 1px solid #6b7280; border-radius: 4px; background: #fff; color: #111827; }",
      ":where(.leadflow-form [aria-invalid=true]) { border-color: #b3261e; }",
      ":where(.leadflow-form .leadflow-error, .leadflow-form .leadflow-summary) { color: #b3261e; margin: .25rem 0 0; }",
      ":where(.leadflow-form .leadflow-req) { color: #b3261e; }",
      ":where(.leadflow-form button[type=submit]) { padding: .6rem 1.2rem; font: inherit; font-weight: 600;" +
        " color: #fff; background: #1f5fbf; border: 0; border-radius: 4px; cursor: pointer; }",
      ":where(.leadflow-form button[disabled]) { opacity: .6; cursor: progress; }"
    ].join("\n");
    document.head.appendChild(style);
  }
  var uid = "lf-" + config.slug + "-" + Math.random().toString(36).slice(2, 8);

  function el(tag, attrs, content) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (attrs[k] !== null && attrs[k] !== undefined && attrs[k] !== false) node.setAttribute(k, attrs[k] === true ? "" : attrs[k]);
    });
    if (content) node.textContent = content;
    return node;
  }

  // The label, and for a required field an asterisk hidden from screen readers
  // (they announce `required` already), as on the hosted page.
  function labelled(node, f) {
    node.appendChild(document.createTextNode(f.label));
    if (f.required) {
      node.appendChild(document.createTextNode(" "));
      node.appendChild(el("span", {"class": "leadflow-req", "aria-hidden": "true"}, "*"));
    }
    return node;
  }

  var form = el("form", {"class": "leadflow-form", novalidate: true, lang: def.language});
  form.appendChild(el("h2", {}, def.title));
  if (def.intro) form.appendChild(el("p", {}, def.intro));
  var summary = el("div", {role: "alert", "class": "leadflow-summary", tabindex: "-1"});
  form.appendChild(summary);
  var errorNodes = {};

  def.fields.forEach(function (f) {
    var id = uid + "-" + f.name, wrap;
    if (f.type === "hidden") { form.appendChild(el("input", {type: "hidden", name: f.name})); return; }
    if (f.type === "radio") {
      wrap = el("fieldset", {"class": "leadflow-field"});
      var legend = labelled(el("legend"), f);
      wrap.appendChild(legend);
      f.choices.forEach(function (c, i) {
        var label = el("label", {"class": "leadflow-choice"});
        label.appendChild(el("input", {type: "radio", name: f.name, value: c.value, id: id + "-" + i, required: f.required}));
        label.appendChild(document.createTextNode(" " + c.label));
        wrap.appendChild(label);
      });
    } else if (f.type === "checkbox") {
      wrap = el("div", {"class": "leadflow-field"});
      var cl = el("label");
      cl.appendChild(el("input", {type: "checkbox", name: f.name, id: id, required: f.required}));
      cl.appendChild(document.createTextNode(" "));
      labelled(cl, f);
      wrap.appendChild(cl);
    } else {
      wrap = el("div", {"class": "leadflow-field"});
      wrap.appendChild(labelled(el("label", {"for": id}), f));
      var input;
      if (f.type === "textarea") input = el("textarea", {name: f.name, id: id, maxlength: f.max_length, required: f.required});
      else if (f.type === "select") {
        input = el("select", {name: f.name, id: id, required: f.required});
        input.appendChild(el("option", {value: ""}, "—"));
        f.choices.forEach(function (c) { input.appendChild(el("option", {value: c.value}, c.label)); });
      } else input = el("input", {type: f.type === "text" ? "text" : f.type, name: f.name, id: id,
                                  maxlength: f.max_length, required: f.required, placeholder: f.placeholder || null});
      wrap.appendChild(input);
    }
    var err = el("p", {"class": "leadflow-error", id: id + "-error", hidden: true});
    wrap.appendChild(err);
    errorNodes[f.name] = {node: err, wrap: wrap};
    form.appendChild(wrap);
  });
  var trap = el("input", {type: "text", name: config.honeypot, tabindex: "-1", autocomplete: "off", "aria-hidden": "true",
                          style: "position:absolute;left:-10000px;width:1px;height:1px;overflow:hidden"});
  form.appendChild(trap);
  var button = el("button", {type: "submit"}, def.submit_label);
  form.appendChild(button);
  host.appendChild(form);

  function utm() {
    var out = {}, params = new URLSearchParams(window.location.search);
    ["utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"].forEach(function (k) {
      if (params.get(k)) out[k] = params.get(k);
    });
    return out;
  }

  function showErrors(errors) {
    Object.keys(errorNodes).forEach(function (name) {
      var e = errorNodes[name], msgs = errors[name];
      e.node.hidden = !msgs;
      e.node.textContent = msgs ? msgs[0] : "";
      var input = e.wrap.querySelector("input,select,textarea");
      if (input) {
        if (msgs) { input.setAttribute("aria-invalid", "true"); input.setAttribute("aria-describedby", e.node.id); }
        else { input.removeAttribute("aria-invalid"); input.removeAttribute("aria-describedby"); }
      }
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var fields = utm();
    fields.referrer = document.referrer || window.location.href;
    def.fields.forEach(function (f) {
      if (f.type === "checkbox") fields[f.name] = !!form.elements[f.name].checked;
      else if (f.type === "radio") { var c = form.querySelector('input[name="' + f.name + '"]:checked'); fields[f.name] = c ? c.value : ""; }
      else fields[f.name] = form.elements[f.name].value;
    });
    fields[config.honeypot] = trap.value;
    button.disabled = true;
    fetch(config.submitUrl, {method: "POST", headers: {"Content-Type": "application/json"},
                             body: JSON.stringify({fields: fields, token: config.token})})
      .then(function (r) { return r.json().then(function (body) { return {status: r.status, body: body}; }); })
      .then(function (res) {
        button.disabled = false;
        if (res.status === 201) {
          if (res.body.redirect) { window.location.href = res.body.redirect; return; }
          form.replaceChildren(el("p", {"class": "leadflow-thanks", role: "status"}, res.body.message));
          return;
        }
        showErrors(res.body.errors || {});
        summary.textContent = (res.body.errors && res.body.errors.token) ? res.body.errors.token[0]
                              : (res.body.message || res.body.error || text.fix);
        summary.focus();
      })
      .catch(function () { button.disabled = false; summary.textContent = text.fix; });
  });
})();
