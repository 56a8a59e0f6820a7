// calbridge admin console: conveniences only. Every action works without
// this file; it shows the "Copy" buttons and copies a URL to the clipboard.
document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button.copy[data-copy]")) {
    button.hidden = false;
    button.addEventListener("click", async () => {
      const field = document.getElementById(button.dataset.copy);
      if (!field) return;
      try {
        await navigator.clipboard.writeText(field.value);
      } catch (err) {
        field.select();
        document.execCommand("copy");
      }
      const label = button.textContent;
      button.textContent = "Copied";
      button.classList.add("done");
      setTimeout(() => { button.textContent = label; button.classList.remove("done"); }, 1500);
    });
  }
  for (const field of document.querySelectorAll("input.feed-url")) {
    field.addEventListener("focus", () => field.select());
  }
});
